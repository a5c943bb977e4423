"""Configuration sync messages, gateway -> terminal (wire protocol v1,
docs/protocol.md "Configuration sync"), on the per-terminal topic
`agri/v1/t/{id}/config`.

What a terminal needs to decide a sale on its own comes in *sections*, each with
an integer version that only the gateway assigns:

    catalogue    the product catalogue (docs/catalogue.md)
    params       the policy parameters and norms (docs/policy.md)
    shop         this terminal's shop: town, designated for restricted-use
    subjects     registry entries of the shop's town (plots, permits, status;
                 village and credit grade for the clerk's screen)
    balances     used quota of those subjects, as of a quota revision
    revocations  revoked card numbers, for protocols.card.verify
    gallery      the face encodings of those subjects (protocols/facegallery.py)

Two message kinds share the topic:
- `manifest` (retained): the versions and digests the gateway currently holds
  for this terminal, so a terminal learns at connect what is newer;
- `chunk` (QoS 1, not retained): one slice of one section's canonical JSON text.
  A chunk carries at most CHUNK_CHARS characters (the schema's bound, what
  every terminal accepts); the gateway cuts sections into slices of
  SEND_CHUNK_CHARS (`send_chunk_chars`), so a section goes in several chunks; the terminal
  reassembles them, checks the SHA-256 digest of the whole and only then
  replaces its copy, so a half-received section never becomes current.

The terminal reports the versions it runs in its status message (`versions`,
section -> decimal string); the gateway pushes a section when the reported
version differs from its own. Every message is MACed with the terminal key and
the prefix b"config:", because a forged catalogue could unban a product.

Pure; runs on MicroPython.
"""

import binascii
import hashlib

from protocols import canonical, envelope, facegallery, reasons
from protocols.schema import BOOL, ENUM, HEX, ID, INT, LIST, MAP, OBJ, OBJECT, STR, SchemaError, check

VERSION = 1
PREFIX = b"config:"
CHUNK_CHARS = 16000            # at most this many characters of section text in a chunk (the schema's bound)
# What the gateway sends: a card-only terminal reads each message into one
# contiguous buffer and parses it, and a 16,000-character chunk (~20 KB on the
# wire, then its 17 KB string) was the block a 125K heap could not find
# (docs/mcu.md "Memory and size"); 2,000 characters keep every block of a
# chunk under ~6 KB, for ~10% more bytes on the wire.
SEND_CHUNK_CHARS = 2000
MAX_CHUNKS = 10000             # a section's chunk count (`count`) at most
MAX_CONFIG_BYTES = 128 * 1024  # one config message

CATALOGUE = "catalogue"
PARAMS = "params"
SHOP = "shop"
SUBJECTS = "subjects"
BALANCES = "balances"
REVOCATIONS = "revocations"
GALLERY = "gallery"
SECTIONS = (CATALOGUE, PARAMS, SHOP, SUBJECTS, BALANCES, REVOCATIONS, GALLERY)

reasons.register({
    "config_digest_mismatch": ("配置数据校验失败，等待重新下发", "config section digest does not match; waiting for a resend"),
    "config_invalid": ("下发的配置数据有误，继续使用上一版本", "the config section is malformed; the previous version stays in use"),
})

MANIFEST = OBJ(required={
    "v": INT(1, 1), "terminal": ID, "kind": ENUM("manifest"), "time": INT(0),
    "sections": MAP(OBJ(required={"version": INT(0), "digest": HEX(64), "size": INT(0)}), 16),
    "mac": HEX(64),
})

CHUNK = OBJ(required={
    "v": INT(1, 1), "terminal": ID, "kind": ENUM("chunk"), "time": INT(0),
    "section": ENUM(*SECTIONS), "version": INT(0), "digest": HEX(64),
    "index": INT(0, MAX_CHUNKS - 1), "count": INT(1, MAX_CHUNKS), "data": STR(CHUNK_CHARS),
    "mac": HEX(64),
})

_USED = MAP(MAP(INT(-10 ** 12, 10 ** 12), 16), 64)
GRADES = ("A", "B", "C")
# A registry entry as terminals get it: in the `subjects` section and in an
# authorization response's `subject` (protocols/authz.py uses this one shape).
# `village` (code) and `village_name` (from the supervision grid) and `grade`
# (the credit grade, docs/supervision.md) are for the clerk's subject panel
# only; the policy never reads them.
SUBJECT = OBJ(
    required={"id": ID, "status": ENUM("active", "suspended", "revoked")},
    optional={"town": STR(64), "village": STR(64), "village_name": STR(100), "grade": ENUM(*GRADES),
              "name": STR(64), "plots": LIST(OBJECT, 0, 500),
              "permits": LIST(OBJECT, 0, 50), "allowances": MAP(INT(-10 ** 12, 10 ** 12), 64)},
)

# Shapes of the sections with no checker of their own (the catalogue and the
# params are checked by protocols.catalogue and protocols.policy).
SECTION_SCHEMAS = {
    SHOP: OBJ(required={"id": ID, "designated": BOOL}, optional={"town": STR(64), "name": STR(128)}),
    SUBJECTS: OBJ(required={"subjects": LIST(SUBJECT, 0, 200000)}, optional={"town": STR(64)}),
    BALANCES: OBJ(required={"rev": INT(0), "acked": INT(0), "used": MAP(_USED, 200000)}),
    REVOCATIONS: OBJ(required={"cards": LIST(ID, 0, 1000000)}),
    GALLERY: OBJ(required={"b64": STR(facegallery.MAX_B64_CHARS), "digest": HEX(64), "size": INT(0),
                           "subjects": INT(0), "rows": INT(0)}),
}


class Invalid(reasons.ReasonError):
    """A config message or section that must not be used; `code` says why."""


def _hex(data):
    return binascii.hexlify(data).decode()


def section_text(content):
    """The canonical text of a section's content: what the digest covers."""
    return canonical.dumps(content)


def digest(text):
    return _hex(hashlib.sha256(text.encode("utf-8")).digest())


def _mac(key, message):
    """A chunk carries 16,000 characters of section text: the MAC is fed to
    the hash piece by piece on a small board (envelope.canonical_hmac_hex)."""
    return envelope.canonical_hmac_hex(key, PREFIX, message)


def _signed(key, message, schema):
    message["mac"] = "0" * 64
    try:
        check(message, schema, message["kind"])
    except SchemaError as err:
        raise Invalid("schema_invalid", str(err))
    message["mac"] = _mac(key, message)
    return canonical.encode(message)


def encode_manifest(key, terminal, time_ms, sections):
    """`sections`: {name: {"version", "digest", "size"}}."""
    return _signed(key, {"v": VERSION, "terminal": terminal, "kind": "manifest", "time": time_ms,
                         "sections": sections}, MANIFEST)


def send_chunk_chars(size):
    """The slice the gateway cuts a section of `size` characters into:
    SEND_CHUNK_CHARS, or more when that would take over MAX_CHUNKS chunks (a
    gallery of tens of thousands of faces), never over CHUNK_CHARS."""
    return min(CHUNK_CHARS, max(SEND_CHUNK_CHARS, -(-size // MAX_CHUNKS)))


def encode_chunks(key, terminal, time_ms, section, version, text, chunk_chars=CHUNK_CHARS):
    """The chunk messages carrying one section's canonical text, in order."""
    whole = digest(text)
    parts = [text[i:i + chunk_chars] for i in range(0, len(text), chunk_chars)] or [""]
    out = []
    for index, part in enumerate(parts):
        out.append(_signed(key, {"v": VERSION, "terminal": terminal, "kind": "chunk", "time": time_ms,
                                 "section": section, "version": version, "digest": whole,
                                 "index": index, "count": len(parts), "data": part}, CHUNK))
    return out


def decode(payload, key):
    """A verified manifest or chunk dict; raises Invalid."""
    message = envelope.parse_json(payload, MAX_CONFIG_BYTES, Invalid)
    kind = message.get("kind") if isinstance(message, dict) else None
    envelope.check_shape(message, MANIFEST if kind == "manifest" else CHUNK, "config", Invalid)
    if not envelope.constant_time_equal(_mac(key, message), message["mac"]):
        raise Invalid("bad_mac", "config %s" % kind)
    return message


def check_section(name, content):
    """Refuse a section a terminal must not start using; raises Invalid."""
    try:
        if name == CATALOGUE:
            from protocols import catalogue
            catalogue.check(content)
        elif name == PARAMS:
            from protocols import policy
            policy.balance({"id": "check", "status": "active"}, {}, content, "2000-01-01")
        elif name in SECTION_SCHEMAS:
            check(content, SECTION_SCHEMAS[name], name)
            if name == GALLERY:
                facegallery.payload_of(content)
        else:
            raise Invalid("config_invalid", "unknown section %r" % (name,))
    except reasons.ReasonError as err:
        if isinstance(err, Invalid):
            raise
        raise Invalid("config_invalid", "%s: %s" % (name, err))
    except SchemaError as err:
        raise Invalid("config_invalid", str(err))
    except facegallery.FormatError as err:
        raise Invalid("config_invalid", "%s: %s" % (name, err))
    return content


class Assembler:
    """Collects the chunks of each section; `add` returns (section, version,
    content) once a section is complete and its digest matches, else None.

    A chunk of a newer (or other) version of a section discards the partial
    older one: the gateway only ever pushes its current version."""

    def __init__(self):
        self._parts = {}

    def add(self, message):
        section = message["section"]
        key = (message["version"], message["digest"], message["count"])
        held = self._parts.get(section)
        if held is None or held[0] != key:
            held = (key, {})
            self._parts[section] = held
        held[1][message["index"]] = message["data"]
        if len(held[1]) < message["count"]:
            return None
        del self._parts[section]
        text = "".join([held[1][i] for i in range(message["count"])])
        if digest(text) != message["digest"]:
            raise Invalid("config_digest_mismatch", "%s version %d" % (section, message["version"]))
        try:
            content = canonical.loads(text)
        except ValueError as err:
            raise Invalid("config_invalid", "%s: %s" % (section, err))
        return section, message["version"], check_section(section, content)


def versions_map(versions):
    """{section: int} -> the status message's {section: "decimal"} map."""
    out = {}
    for name in versions:
        out[name] = "%d" % versions[name]
    return out


def parse_versions(reported):
    """The status message's map back to {section: int}; junk entries are skipped."""
    out = {}
    for name in reported or {}:
        value = reported[name]
        if isinstance(value, str) and value.isdigit() and len(value) < 16:
            out[name] = int(value)
    return out
