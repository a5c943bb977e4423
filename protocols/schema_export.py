"""JSON Schema (draft 2020-12) documents and the field reference of
docs/protocol.md, generated from the shapes in `protocols/schema.py` form.

Why generated: a vendor building a terminal from the spec needs the message
shapes in a form its own tools read (JSON Schema), and the project's
validators (`protocols.schema.check`) must stay the one definition. So the
tuples in `protocols.records`, `envelope`, `authz` and `configsync` are walked
here, the meaning of every field comes from `protocols.wire_fields`, and
`python -m protocols schemas --out docs/schemas` writes both the schema files
and the field tables of docs/protocol.md. tests/test_schemas.py checks that
the committed files are what this produces, and that the schemas accept
exactly what the validators accept.

Three translations need care, because JSON Schema tools read patterns with
their own regex engine and numbers as mathematical values:
- identifiers and hex end with `(?![\\s\\S])` rather than `$`: in Python's
  `re` (which the `jsonschema` package uses) `$` also matches before a final
  newline, so `"T1\\n"` would pass; the lookahead means "end of text" in both
  ECMA-262 and Python;
- `v` is `minimum 1, maximum 1`, not `const: 1`: some tools take `true` for
  1 in `const`;
- JSON Schema cannot tell 1 from 1.0: the wire refuses every float before
  any schema applies (`float_not_allowed`, "Canonical encoding"), which each
  document says in its `$comment`.

CPython only, like `cli`: MicroPython never generates documents.
"""

import json
from pathlib import Path

from protocols import authz, configsync, envelope, records, wire_fields
from protocols.canonical import MAX_SAFE_INT

DIALECT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://agri-quota.example/schemas/v1/"
ID_PATTERN = "^[A-Za-z0-9_.:-]{1,64}(?![\\s\\S])"
NO_FLOATS = ("The wire has no floats: a message holding any number with a fraction or an exponent "
             "(1.0, 1e3) is refused before this schema applies (float_not_allowed). JSON Schema "
             "cannot tell 1 from 1.0, so this document alone would accept 1.0 where an integer is asked.")

# Every named shape: (definition name, schema tuple). The generator refers to a
# shape by name wherever the same tuple object is used, so a shape shared by
# two messages (the proof, the subject entry) is one definition in both.
NAMED = [
    ("record", envelope.ENVELOPE),
    ("sale", records.BODIES[records.SALE]),
    ("refusal", records.BODIES[records.REFUSAL]),
    ("void", records.BODIES[records.VOID]),
    ("return", records.BODIES[records.RETURN]),
    ("heartbeat", records.BODIES[records.HEARTBEAT]),
    ("event", records.BODIES[records.EVENT]),
    ("item", records.ITEM),
    ("proof", records.PROOF),
    ("card_proof", records.CARD_PROOF),
    ("face_proof", records.FACE_PROOF),
    ("override_proof", records.OVERRIDE_PROOF),
    ("batch", envelope.BATCH),
    ("ack", envelope.ACK_SCHEMA),
    ("status", envelope.STATUS_SCHEMA),
    ("auth_request", authz.REQUEST),
    ("cart_line", authz.LINE),
    ("auth_response", authz.RESPONSE),
    ("decision", authz.DECISION),
    ("item_decision", authz.ITEM_DECISION),
    ("subject_entry", configsync.SUBJECT),
    ("config_manifest", configsync.MANIFEST),
    ("manifest_section", configsync.MANIFEST[1]["sections"][0][1]),
    ("config_chunk", configsync.CHUNK),
    ("section_shop", configsync.SECTION_SCHEMAS[configsync.SHOP]),
    ("section_subjects", configsync.SECTION_SCHEMAS[configsync.SUBJECTS]),
    ("section_balances", configsync.SECTION_SCHEMAS[configsync.BALANCES]),
    ("section_revocations", configsync.SECTION_SCHEMAS[configsync.REVOCATIONS]),
    ("section_gallery", configsync.SECTION_SCHEMAS[configsync.GALLERY]),
]
_NAME_OF = {id(shape): name for name, shape in NAMED}
_SHAPE_OF = dict(NAMED)

# One document per message (and per config section with a schema of its own):
# (file, root definition, where it travels).
DOCUMENTS = [
    ("record.schema.json", "record", "one ledger record, inside a batch; also `python -m firmware ledger export`"),
    ("batch.schema.json", "batch", "agri/v1/t/{terminal}/up, terminal to gateway, QoS 1"),
    ("ack.schema.json", "ack", "agri/v1/t/{terminal}/ack, gateway to terminal, QoS 1, retained"),
    ("status.schema.json", "status", "agri/v1/t/{terminal}/status, terminal to all, QoS 1, retained; the last will"),
    ("auth-request.schema.json", "auth_request", "agri/v1/t/{terminal}/auth/req, terminal to gateway, QoS 1"),
    ("auth-response.schema.json", "auth_response", "agri/v1/t/{terminal}/auth/resp, gateway to terminal, QoS 1"),
    ("config.schema.json", "config", "agri/v1/t/{terminal}/config, gateway to terminal: a manifest (QoS 1, "
                                     "retained) or a chunk (QoS 1)"),
    ("section-shop.schema.json", "section_shop", "the `shop` config section, once its chunks are joined"),
    ("section-subjects.schema.json", "section_subjects", "the `subjects` config section"),
    ("section-balances.schema.json", "section_balances", "the `balances` config section"),
    ("section-revocations.schema.json", "section_revocations", "the `revocations` config section"),
    ("section-gallery.schema.json", "section_gallery", "the `gallery` config section (docs/face.md for `b64`)"),
]

# Limits the schemas cannot state (sizes of the encoded message, MACs, order).
LIMITS = {
    "record": "At most %d bytes of canonical text; `mac` must verify (bad_mac); the body is checked against "
              "the definition its `type` names." % envelope.MAX_RECORD_BYTES,
    "batch": "At most %d bytes; `terminal` must be the topic's (terminal_mismatch); each record is checked on "
             "its own, and seqs must increase (batch_not_increasing)." % envelope.MAX_BATCH_BYTES,
    "ack": "At most %d bytes; `mac` must verify under the receiving terminal's key, prefix `ack:`."
           % envelope.MAX_CONTROL_BYTES,
    "status": "At most %d bytes." % envelope.MAX_CONTROL_BYTES,
    "auth_request": "At most %d bytes; `mac` with prefix `authreq:`." % authz.MAX_AUTH_BYTES,
    "auth_response": "At most %d bytes; `mac` with prefix `authresp:`." % authz.MAX_AUTH_BYTES,
    "config": "At most %d bytes; `mac` with prefix `config:`." % configsync.MAX_CONFIG_BYTES,
}


def _hex_pattern(lo, hi):
    count = "{%d}" % lo if lo == hi else "{%d,%d}" % (lo, hi)
    return "^[0-9a-f]%s(?![\\s\\S])" % count


def _int(lo, hi):
    out = {"type": "integer", "minimum": lo}
    out["maximum"] = min(hi, MAX_SAFE_INT)
    return out


def to_json_schema(shape, uses, top=False):
    """The JSON Schema of one shape tuple; named shapes below the top become
    `$ref`s (their names are added to `uses`)."""
    name = _NAME_OF.get(id(shape))
    if name is not None and not top:
        uses.add(name)
        return {"$ref": "#/$defs/" + name}
    kind = shape[0]
    if kind == "str":
        return {"type": "string", "maxLength": shape[1]}
    if kind == "id":
        return {"type": "string", "pattern": ID_PATTERN}
    if kind == "hex":
        return {"type": "string", "pattern": _hex_pattern(shape[1], shape[-1])}
    if kind == "int":
        return _int(shape[1], shape[2])
    if kind == "bool":
        return {"type": "boolean"}
    if kind == "enum":
        return {"type": "string", "enum": list(shape[1])}
    if kind == "list":
        return {"type": "array", "items": to_json_schema(shape[1], uses), "minItems": shape[2], "maxItems": shape[3]}
    if kind == "map":
        return {"type": "object", "maxProperties": shape[2], "propertyNames": {"pattern": ID_PATTERN},
                "additionalProperties": to_json_schema(shape[1], uses)}
    if kind == "object":
        return {"type": "object"}
    if kind == "obj":
        return _obj(name, shape, uses)
    raise ValueError("no JSON Schema for shape kind %r" % (kind,))


def _obj(name, shape, uses):
    meanings = wire_fields.FIELDS.get(name, {}) if name else {}
    properties, required = {}, []
    for field in sorted(shape[1]):
        spec, needed = shape[1][field]
        prop = to_json_schema(spec, uses)
        if name == "batch" and field == "records":
            # the frame holds any objects (one bad record quarantines only
            # itself), and each is then checked as a record: say both at once
            uses.add("record")
            prop = dict(prop, items={"$ref": "#/$defs/record"})
        if field in meanings:
            prop = dict(prop, description=meanings[field])
        properties[field] = prop
        if needed:
            required.append(field)
    out = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    if name == "record":
        out["allOf"] = _body_by_type(uses)
    return out


def _body_by_type(uses):
    """The record's body is checked against the definition its `type` names
    (`envelope.validate_record`)."""
    rules = []
    for rtype in records.TYPES:
        uses.add(rtype)
        rules.append({"if": {"properties": {"type": {"const": rtype}}, "required": ["type"]},
                      "then": {"properties": {"body": {"$ref": "#/$defs/" + rtype}}}})
    return rules


def _definition(name, uses):
    if name == "config":
        uses.update(("config_manifest", "config_chunk"))
        return {"oneOf": [{"$ref": "#/$defs/config_manifest"}, {"$ref": "#/$defs/config_chunk"}]}
    out = to_json_schema(_SHAPE_OF[name], uses, top=True)
    title = wire_fields.TITLES.get(name)
    if title:
        out = dict(out, description=title)
    return out


def document(file_name, root, where):
    """One self-contained schema document: the root and every definition it reaches."""
    uses = set()
    body = _definition(root, uses)
    defs, todo = {}, sorted(uses)
    while todo:
        name = todo.pop()
        if name in defs or name == root:
            continue
        more = set()
        defs[name] = _definition(name, more)
        todo.extend(sorted(more - set(defs)))
    out = {"$schema": DIALECT, "$id": BASE_ID + file_name, "title": wire_fields.TITLES.get(root, root),
           "$comment": " ".join(x for x in (where + ".", LIMITS.get(root, ""), NO_FLOATS) if x)}
    out.update(body)
    if defs:
        out["$defs"] = {name: defs[name] for name in sorted(defs)}
    return out


def documents():
    """{file name: schema document} for every message."""
    return {file_name: document(file_name, root, where) for file_name, root, where in DOCUMENTS}


def render(doc):
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def index():
    """docs/schemas/README.md: which document is which message, and where it travels."""
    lines = ["# JSON Schemas of wire protocol v1", "",
             "Generated by `python -m protocols schemas --out docs/schemas --doc docs/protocol.md` from the shapes "
             "in `protocols/` (never edit by hand; `tests/test_schemas.py` checks they match and that they accept "
             "exactly what the project's validators accept). JSON Schema draft 2020-12. The page that explains "
             "them: [../protocol.md](../protocol.md); every field's meaning is in each document's `description`s "
             "and in the field reference there.", "",
             "What no schema can say, and every receiver checks too: the canonical encoding has no floats "
             "(`1.0` is refused before any schema applies), the size limits and the MACs below, and that "
             "`terminal` is the topic's.", "",
             "| document | message | travels on | also checked |", "|---|---|---|---|"]
    for file_name, root, where in DOCUMENTS:
        lines.append("| [%s](%s) | %s | %s | %s |" % (file_name, file_name, wire_fields.TITLES[root], where,
                                                   LIMITS.get(root, "")))
    lines += ["", "The `catalogue` and `params` config sections are checked by code, not by a schema "
              "(`protocols.catalogue.check`, the policy's parameter checks): docs/catalogue.md, docs/policy.md."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the field reference

def describe(shape):
    """A shape's type and range in words, for the field tables."""
    name = _NAME_OF.get(id(shape))
    if name is not None and shape[0] == "obj":
        return "object `%s`" % name
    kind = shape[0]
    if kind == "str":
        return "string, at most %d characters" % shape[1]
    if kind == "id":
        return "id: 1-64 of `A-Z a-z 0-9 _ - . :`"
    if kind == "hex":
        lo, hi = shape[1], shape[-1]
        return "%d lowercase hex digits" % lo if lo == hi else "%d..%d lowercase hex digits" % (lo, hi)
    if kind == "int":
        lo, hi = shape[1], shape[2]
        if lo == hi:
            return "integer, exactly %d" % lo
        if hi >= MAX_SAFE_INT:
            return "integer >= %s" % _num(lo)
        return "integer %s..%s" % (_num(lo), _num(hi))
    if kind == "bool":
        return "boolean"
    if kind == "enum":
        return "one of " + ", ".join("`%s`" % v for v in shape[1])
    if kind == "list":
        return "list of %d..%d: %s" % (shape[2], shape[3], describe(shape[1]))
    if kind == "map":
        return "object of at most %d entries, id → %s" % (shape[2], describe(shape[1]))
    if kind == "object":
        return "object (checked elsewhere)"
    return "object"


def _num(n):
    for power in (12, 9):
        if abs(n) == 10 ** power:
            return ("-" if n < 0 else "") + "10^%d" % power
    return "%d" % n


def field_tables():
    """Markdown: one table per named object shape, every field with its
    type and range, whether it is required, and its meaning."""
    lines = []
    for name, shape in NAMED:
        if shape[0] != "obj":
            continue
        lines.append("#### `%s`" % name)
        lines.append("")
        lines.append(wire_fields.TITLES[name])
        lines.append("")
        lines.append("| field | type and range | req. | meaning |")
        lines.append("|---|---|---|---|")
        meanings = wire_fields.FIELDS[name]
        for field in sorted(shape[1]):
            spec, needed = shape[1][field]
            lines.append("| `%s` | %s | %s | %s |" % (field, describe(spec), "yes" if needed else "",
                                                      meanings[field].replace("|", "\\|")))
        lines.append("")
    return "\n".join(lines)


BEGIN = "<!-- field reference: generated by `python -m protocols schemas`, do not edit by hand -->"
END = "<!-- end of the generated field reference -->"


def doc_with_tables(text):
    """`text` (docs/protocol.md) with its generated region replaced."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError("docs/protocol.md has no generated region (%s ... %s)" % (BEGIN, END))
    return text[:start] + BEGIN + "\n\n" + field_tables() + "\n" + text[end:]


def write(out_dir, doc_path=None):
    """Write every document into `out_dir` (and the tables into `doc_path`);
    returns the paths written. Files of ours that no message needs any more
    are removed, so the directory never publishes a stale schema."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    wanted = documents()
    for old in out_dir.glob("*.schema.json"):
        if old.name not in wanted:
            old.unlink()
    for file_name, doc in wanted.items():
        path = out_dir / file_name
        path.write_text(render(doc), encoding="utf-8")
        written.append(path)
    (out_dir / "README.md").write_text(index(), encoding="utf-8")
    written.append(out_dir / "README.md")
    if doc_path is not None:
        doc_path = Path(doc_path)
        doc_path.write_text(doc_with_tables(doc_path.read_text("utf-8")), encoding="utf-8")
        written.append(doc_path)
    return written


def differences(out_dir, doc_path=None):
    """Names of the files that differ from what `write` would produce."""
    out_dir = Path(out_dir)
    wrong = []
    wanted = documents()
    for file_name, doc in wanted.items():
        path = out_dir / file_name
        if not path.is_file() or path.read_text("utf-8") != render(doc):
            wrong.append(str(path))
    for old in out_dir.glob("*.schema.json"):
        if old.name not in wanted:
            wrong.append(str(old))
    readme = out_dir / "README.md"
    if not readme.is_file() or readme.read_text("utf-8") != index():
        wrong.append(str(readme))
    if doc_path is not None:
        text = Path(doc_path).read_text("utf-8")
        try:
            if doc_with_tables(text) != text:
                wrong.append(str(doc_path))
        except ValueError:
            wrong.append(str(doc_path))
    return wrong
