"""The published JSON Schemas (docs/schemas/) are what the generator makes
from protocols/schema.py shapes, and they accept exactly what the project's
validators accept: on every shared test vector, on a valid example of every
message, and on hostile variations of those that hypothesis generates."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import authz, canonical, configsync, envelope, schema_export, wire_fields
from protocols.schema import SchemaError, check
from protocols.vectors_cli import PATH as VECTORS

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "docs" / "schemas"
KEY = bytes(range(32))
BIG = 1 << 30


# ---------------------------------------------------------------- generated, never written twice

def test_committed_schemas_and_field_reference_are_what_the_generator_makes():
    proc = subprocess.run([sys.executable, "-m", "protocols", "schemas", "--out", str(SCHEMAS),
                           "--doc", str(ROOT / "docs" / "protocol.md"), "--check"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_check_fails_on_a_schema_edited_by_hand(tmp_path):
    schema_export.write(tmp_path)
    path = tmp_path / "ack.schema.json"
    doc = json.loads(path.read_text())
    doc["properties"]["upto"]["minimum"] = 1
    path.write_text(json.dumps(doc))
    (tmp_path / "old.schema.json").write_text("{}")
    assert schema_export.differences(tmp_path) == [str(path), str(tmp_path / "old.schema.json")]


def test_every_field_of_every_shape_has_a_meaning_and_no_meaning_is_stale():
    for name, shape in schema_export.NAMED:
        fields = set(shape[1])
        assert set(wire_fields.FIELDS[name]) == fields, name
        assert wire_fields.TITLES[name], name
    assert set(wire_fields.FIELDS) == {name for name, _ in schema_export.NAMED}


def test_every_document_is_a_valid_draft_2020_12_schema():
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_the_field_reference_states_type_range_and_meaning():
    text = (ROOT / "docs" / "protocol.md").read_text()
    assert "| `packs` | integer 1..100000 | yes | number of packs |" in text
    assert "| `total_fen` | integer >= 0 |  | what the buyer paid, in fen (0.01 yuan): the lines' `price_fen` plus" in text


# ---------------------------------------------------------------- one verdict per side

def _validators():
    return {name: jsonschema.Draft202012Validator(json.loads((SCHEMAS / name).read_text()))
            for name in (f for f, _, _ in schema_export.DOCUMENTS)}


VALIDATORS = _validators()


def _wire_accepts(root, value):
    """The project's validators, at the schema level (no MAC, no sizes)."""
    try:
        if root == "record.schema.json":
            envelope.validate_record(value)
        elif root == "batch.schema.json":
            envelope.check_shape(value, envelope.BATCH, "batch")
            for record in value["records"]:
                envelope.validate_record(record)
        elif root == "ack.schema.json":
            envelope.check_shape(value, envelope.ACK_SCHEMA, "ack")
        elif root == "status.schema.json":
            envelope.check_shape(value, envelope.STATUS_SCHEMA, "status")
        elif root == "auth-request.schema.json":
            envelope.check_shape(value, authz.REQUEST, "request", authz.Invalid)
        elif root == "auth-response.schema.json":
            envelope.check_shape(value, authz.RESPONSE, "response", authz.Invalid)
        elif root == "config.schema.json":
            kind = value.get("kind") if isinstance(value, dict) else None
            envelope.check_shape(value, configsync.MANIFEST if kind == "manifest" else configsync.CHUNK, "config",
                                 configsync.Invalid)
        else:
            section = root[len("section-"):-len(".schema.json")]
            check(value, configsync.SECTION_SCHEMAS[section], section)
    except (envelope.Invalid, authz.Invalid, configsync.Invalid, SchemaError):
        return False
    return True


def _has_float(value):
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return False


def _schema_accepts(root, value):
    """The published schema, with the one rule a schema cannot state (no floats)."""
    return not _has_float(value) and VALIDATORS[root].is_valid(value)


def _agree(root, value):
    wire, published = _wire_accepts(root, value), _schema_accepts(root, value)
    assert wire == published, "%s: validators %s, schema %s, for %s" % (
        root, "accept" if wire else "refuse", "accepts" if published else "refuses", json.dumps(value)[:400])
    return wire


# ---------------------------------------------------------------- the vectors

def test_schemas_and_validators_agree_on_every_envelope_vector():
    vectors = json.loads(VECTORS.read_text())
    for case in vectors["records"]:
        assert _agree("record.schema.json", json.loads(case["canonical"]))
    schema_level = ("schema_invalid", "unsupported_version")
    for case in vectors["bad_records"]:
        accepted = _agree("record.schema.json", case["record"])
        assert accepted == (case["reason"] not in schema_level), case["name"]
    for case in vectors["bad_payloads"]:
        try:
            value = canonical.loads(bytes.fromhex(case["payload_hex"]))
        except (ValueError, UnicodeError):
            continue   # refused before any schema: malformed_json, not_utf8, float_not_allowed
        _agree("batch.schema.json", value)
        if case["reason"] in schema_level:
            assert not _schema_accepts("batch.schema.json", value), case["name"]
    assert _agree("ack.schema.json", json.loads(vectors["ack"]["payload"]))
    for case in vectors["bad_acks"]:
        accepted = _agree("ack.schema.json", json.loads(case["payload"]))
        assert accepted == (case["reason"] not in schema_level), case["name"]


def test_the_float_rule_is_the_wire_s_not_the_schema_s():
    """1.0 is a number JSON Schema calls an integer; the wire refuses it first."""
    ack = json.loads(envelope.encode_ack(KEY, "T1", 5))
    ack["upto"] = 5.0
    assert VALIDATORS["ack.schema.json"].is_valid(ack)
    with pytest.raises(envelope.Invalid) as err:
        envelope.parse_json(json.dumps(ack), 4096)
    assert err.value.code == "float_not_allowed"


# ---------------------------------------------------------------- a valid example of every message

def _record(rtype, body, seq=1):
    return envelope.make_record(KEY, "T-1", seq, envelope.GENESIS, 1764300000000, rtype, body)


PROOF = {"card": {"payload": "ab" * 40, "uid": "04a1b2c3"}, "face": {"distance": 3812, "gallery": 7, "live": True},
         "override": {"reason": "override_other", "text": "忘带卡"}}
ITEM = {"product": "PD20080001", "packs": 2, "spec": "002", "code": "https://x.cn/q?c=1", "amount": 1000,
        "unit": "g", "price_fen": 4560, "decision": "approve", "reasons": []}
BODIES = {
    "sale": {"subject": "S-1", "items": [ITEM], "identity": "card+face", "mode": "online", "clerk": "c1",
             "card": "C-1", "auth": "A1", "consumption": {"fert_n": 46000}, "reasons": [], "total_fen": 0,
             "sale_id": "T-1-0001", "proof": PROOF},
    "refusal": {"items": [], "reasons": ["product_banned"], "clerk": "c1", "subject": "S-1", "identity": "card",
                "mode": "offline", "card": "C-1", "sale_id": "T-1-2", "proof": {}},
    "void": {"voids": 3, "reason": "clerk_error", "clerk": "c1", "subject": "S-1",
             "consumption": {"fert_n": -46000}, "auth": "A1"},
    "return": {"subject": "S-1", "codes": ["https://x.cn/q?c=1"], "clerk": "c1", "links": [3], "deposit_fen": 50},
    "heartbeat": {"uptime_s": 60, "backlog": 0, "acked": 9, "disk_free_kb": 1000, "versions": {"catalogue": "3"},
                  "online": True},
    "event": {"code": "ledger_disk_full", "detail": "x", "ref": 4, "digest": "0" * 64},
}
DECISION = {"decision": "approve", "mode": "online", "date": "2025-04-12", "codes": [], "reasons": [],
            "consumption": {"fert_n": 46000}, "periods": {"fert_n": "2025"}, "remaining": {"fert_n": 1},
            "policy": 1, "params_version": 2, "catalogue_version": 3, "action": "identify",
            "items": [{"line": 0, "product": "PD20080001", "spec": "002", "packs": 2, "decision": "approve",
                       "reasons": [], "consumption": {"fert_n": 46000}, "max_packs": 9, "status": "normal",
                       "amount": 100000, "unit": "g", "action": "identify"}]}
SUBJECT = {"id": "S-1", "status": "active", "town": "330110001", "village": "330110001001", "village_name": "村",
           "grade": "A", "name": "张三", "plots": [{"crop": "rice"}], "permits": [], "allowances": {"fert_n": 5}}


def valid_examples():
    """(document, value): one valid message of each kind, every optional field used."""
    records = [_record(rtype, body) for rtype, body in BODIES.items()]
    yield from (("record.schema.json", r) for r in records)
    yield "batch.schema.json", {"v": 1, "terminal": "T-1", "after": 0, "records": records[:2]}
    yield "ack.schema.json", json.loads(envelope.encode_ack(KEY, "T-1", 41, seen=42))
    yield "status.schema.json", json.loads(envelope.encode_status("T-1", "online", 1, 20, 18, {"catalogue": "12"}))
    yield "status.schema.json", json.loads(envelope.encode_status("T-1", "offline"))
    yield "auth-request.schema.json", json.loads(authz.encode_request(
        KEY, "T-1", "9f2c", "T-1-0001", 1, "S-1", "card+face",
        [{"product": "PD20080001", "spec": "002", "packs": 2}], card="C-1", clerk="c1", proof=PROOF))
    yield "auth-response.schema.json", json.loads(authz.encode_response(
        KEY, "T-1", "9f2c", "T-1-0001", 2, "ok", auth="A1", decision=DECISION, replayed=False,
        used={"fert_n": {"2025": 46000}}, rev=8, acked=41, subject=SUBJECT))
    yield "auth-response.schema.json", json.loads(authz.encode_response(
        KEY, "T-1", "9f2c", "T-1-0001", 2, "error", code="auth_superseded"))
    yield "config.schema.json", json.loads(configsync.encode_manifest(
        KEY, "T-1", 1, {"shop": {"version": 1, "digest": "a" * 64, "size": 10}}))
    yield "config.schema.json", json.loads(configsync.encode_chunks(KEY, "T-1", 1, "shop", 1, '{"a":1}')[0])
    yield "section-shop.schema.json", {"id": "SH1", "designated": True, "town": "330110001", "name": "店"}
    yield "section-subjects.schema.json", {"subjects": [SUBJECT], "town": "330110001"}
    yield "section-balances.schema.json", {"rev": 1, "acked": 2, "used": {"S-1": {"fert_n": {"2025": 3}}}}
    yield "section-revocations.schema.json", {"cards": ["C-1"]}
    yield "section-gallery.schema.json", {"b64": "", "digest": "0" * 64, "size": 0, "subjects": 0, "rows": 0}


EXAMPLES = list(valid_examples())


def test_every_document_has_a_valid_example_both_sides_accept():
    assert {root for root, _ in EXAMPLES} == set(VALIDATORS)
    for root, value in EXAMPLES:
        assert _agree(root, value), root


# ---------------------------------------------------------------- hostile variations

EDGE_INTS = [0, 1, -1, 2, 7, 16, 32, 64, 100, 500, 1000, 9999, 10000, 10001, 100000, 100001, 10 ** 12,
             10 ** 12 + 1, -10 ** 12, -10 ** 12 - 1, 2 ** 53 - 1, 2 ** 53, -(2 ** 53)]
EDGE_STRINGS = ["", "T1", "T1\n", "T/1", "a" * 64, "a" * 65, "0" * 64, "0" * 63, "A" * 64, "0" * 65, "ab",
                "abc", "g", "mL", "online", "sale", "approve", "card", "manifest", "chunk", "农药", " ", "x" * 201,
                "2025-04-12", "a:b.c-d_e", "\u0000", "ok", "error", "override_other", "0" * 601, "0" * 8]
SCALARS = (st.none() | st.booleans() | st.sampled_from(EDGE_INTS) | st.integers(-BIG, BIG)
           | st.sampled_from(EDGE_STRINGS) | st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(["v", "x", "T1", "a b", "body"]) | st.text(max_size=4),
                                        inner, max_size=3), max_leaves=6)


def _paths(value, at=()):
    yield at
    if isinstance(value, dict):
        for key in value:
            yield from _paths(value[key], at + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, at + (i,))


def _copy(value):
    return json.loads(json.dumps(value))


def _mutate(value, path, how, new, name):
    out = _copy(value)
    if not path:
        return new if how == "replace" else out
    parent = out
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "replace":
        parent[last] = new
    elif how == "delete":
        if isinstance(parent, dict):
            del parent[last]
        else:
            parent.pop(last)
    elif how == "add" and isinstance(parent[last], dict):
        parent[last][name] = new
    elif how == "add" and isinstance(parent[last], list):
        parent[last].append(new)
    else:
        parent[last] = new
    return out


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_schemas_and_validators_agree_on_hostile_variations(data):
    root, value = data.draw(st.sampled_from(EXAMPLES), label="example")
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        path = data.draw(st.sampled_from(list(_paths(value))), label="path")
        how = data.draw(st.sampled_from(["replace", "delete", "add"]), label="how")
        new = data.draw(VALUES, label="new")
        name = data.draw(st.sampled_from(["x", "mac", "seen", "proof", "T1", "extra"]), label="name")
        value = _mutate(value, path, how, new, name)
    _agree(root, value)


@settings(max_examples=300, deadline=None)
@given(root=st.sampled_from(sorted(VALIDATORS)), value=VALUES)
def test_schemas_and_validators_agree_on_arbitrary_json(root, value):
    _agree(root, value)


SWEEP_VALUES = [None, True, False, [], {}, "T1\n"] + EDGE_INTS + EDGE_STRINGS


def test_schemas_and_validators_agree_on_every_field_replaced_by_every_edge_value():
    """Systematic where hypothesis samples: each field of each example
    replaced by each edge value (lengths and bounds just inside and outside,
    a trailing newline, wrong types), and each field removed."""
    checked = 0
    for root, example in EXAMPLES:
        for path in _paths(example):
            if not path:
                continue
            _agree(root, _mutate(example, path, "delete", None, ""))
            for new in SWEEP_VALUES:
                _agree(root, _mutate(example, path, "replace", new, ""))
                checked += 1
    assert checked > 10000
