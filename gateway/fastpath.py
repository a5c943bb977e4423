"""The fast way through verification for the messages honest terminals send.

`protocols.schema` is the one definition of every message shape; here it is
translated, once at import, into msgspec types, so a whole batch is parsed and
checked against the schema in C. Each record's body is kept as the raw bytes
it arrived as, and the MAC is checked over those bytes (`{"body":` + raw +
`,` + the envelope tail): an honest terminal sends its ledger rows verbatim,
which are canonical, so no re-encoding is needed.

Anything the fast path does not accept — a schema error anywhere in the batch,
a MAC that fails over the raw bytes — goes to the general path in
`gateway.verify`, which re-encodes canonically and names the precise reason per
record. The fast path only ever accepts what the general path would accept.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from gateway.verify import Batch, Entry, Rejected, check_batch
from protocols import envelope, records, schema

_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:")
_HEX_CHARS = frozenset("0123456789abcdef")
# msgspec checks lengths in C; the character sets of ids and hex are checked by
# the walkers below, which is several times cheaper than a regex per field.
IdStr = Annotated[str, Meta(min_length=1, max_length=64)]


class _Fallback(Exception):
    pass


def to_type(spec, name: str = "Obj") -> Any:
    """The msgspec type for a schema: with `charset_walker`, it accepts exactly
    what `protocols.schema.check` accepts."""
    kind = spec[0]
    if kind == "str":
        return Annotated[str, Meta(max_length=spec[1])]
    if kind == "id":
        return IdStr
    if kind == "hex":
        return Annotated[str, Meta(min_length=spec[1], max_length=spec[1])]
    if kind == "int":
        return Annotated[int, Meta(ge=spec[1], le=spec[2])]
    if kind == "bool":
        return bool
    if kind == "enum":
        return Literal[tuple(spec[1])]
    if kind == "list":
        return Annotated[list[to_type(spec[1], name + "Item")], Meta(min_length=spec[2], max_length=spec[3])]
    if kind == "map":
        return Annotated[dict[IdStr, to_type(spec[1], name + "Value")], Meta(max_length=spec[2])]
    if kind == "object":
        return msgspec.Raw
    if kind == "obj":
        fields = []
        for field, (sub, required) in spec[1].items():
            t = to_type(sub, name + field.title())
            fields.append((field, t) if required else (field, t | msgspec.UnsetType, msgspec.UNSET))
        fields.sort(key=lambda f: len(f) == 3)  # required fields first
        return msgspec.defstruct(name, fields, forbid_unknown_fields=True)
    raise ValueError(f"no msgspec type for schema kind {kind!r}")


def _check_chars(value: str, allowed: frozenset) -> None:
    if not allowed.issuperset(value):
        raise _Fallback


def charset_walker(spec):
    """A function checking the character sets of every id and hex field in a
    decoded value of `spec`, or None when there are none."""
    kind = spec[0]
    if kind == "id":
        return lambda v: _check_chars(v, _ID_CHARS)
    if kind == "hex":
        return lambda v: _check_chars(v, _HEX_CHARS)
    if kind == "list":
        inner = charset_walker(spec[1])
        if inner is None:
            return None
        return lambda v: [inner(x) for x in v]
    if kind == "map":
        inner = charset_walker(spec[1])

        def walk_map(v):
            for key, x in v.items():
                _check_chars(key, _ID_CHARS)
                if inner is not None:
                    inner(x)
        return walk_map
    if kind == "obj":
        subs = [(field, w) for field, (sub, _) in spec[1].items() if (w := charset_walker(sub)) is not None]
        if not subs:
            return None

        def walk_obj(v):
            for field, w in subs:
                x = getattr(v, field)
                if x is not msgspec.UNSET:
                    w(x)
        return walk_obj
    return None


Record = to_type(envelope.ENVELOPE, "Record")  # body is msgspec.Raw (schema OBJECT)
BatchMsg = msgspec.defstruct(
    "BatchMsg",
    [("v", to_type(schema.INT(1, 1))), ("terminal", IdStr), ("after", to_type(schema.INT(0))),
     ("records", Annotated[list[Record], Meta(min_length=1, max_length=envelope.MAX_BATCH_RECORDS)])],
    forbid_unknown_fields=True,
)
_batch_decoder = msgspec.json.Decoder(BatchMsg)
_bodies = {}
for _rtype, _spec in records.BODIES.items():
    _bodies[_rtype] = (msgspec.json.Decoder(to_type(_spec, "Body" + _rtype.title())).decode,
                       charset_walker(_spec) or (lambda v: None))


def check_batch_fast(topic_terminal: str, payload: bytes, key_for) -> Batch | Rejected:
    """Same contract as `gateway.verify.check_batch`, several times faster on
    well-formed input."""
    if len(payload) > envelope.MAX_BATCH_BYTES:
        return Rejected(topic_terminal, "payload_too_large", f"{len(payload)} bytes > {envelope.MAX_BATCH_BYTES}")
    try:
        return _fast(topic_terminal, payload, key_for)
    except (_Fallback, msgspec.MsgspecError, UnicodeError, ValueError):
        return check_batch(topic_terminal, payload, key_for)


def _fast(topic_terminal: str, payload: bytes, key_for) -> Batch | Rejected:
    msg = _batch_decoder.decode(payload)
    terminal = msg.terminal
    if terminal != topic_terminal:
        raise _Fallback
    key = key_for(terminal)
    if key is None:
        raise _Fallback
    entries = []
    append = entries.append
    sha256 = hashlib.sha256
    digest_mac = hmac.digest
    for r in msg.records:
        if r.terminal != terminal or r.v != 1:
            raise _Fallback
        rtype = r.type
        raw = bytes(r.body)
        decode, walk = _bodies[rtype]
        walk(decode(raw))
        _check_chars(r.prev, _HEX_CHARS)
        tail = ('"prev":"%s","seq":%d,"terminal":"%s","time":%d,"type":"%s","v":1}' % (
            r.prev, r.seq, terminal, r.time, rtype)).encode()
        signed = b'{"body":' + raw + b"," + tail
        if len(signed) > envelope.MAX_RECORD_BYTES:
            raise _Fallback
        if not hmac.compare_digest(digest_mac(key, b"record:" + signed, "sha256").hex(), r.mac):
            raise _Fallback
        stored = (b'{"body":' + raw + b',"mac":"' + r.mac.encode() + b'",' + tail).decode()
        append(Entry(r.seq, True, stored, rtype, r.time, sha256(signed).hexdigest(), r.prev))
    return Batch(terminal, msg.after, entries)
