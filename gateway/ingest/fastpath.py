"""The fast way through verification for the messages honest terminals send.

`protocols.schema` is the one definition of every message shape; here it is
translated, once at import, into msgspec types: one per record type, the
envelope with that type's body in it. Each record arrives as the text of the
terminal's ledger row, which is canonical; it is decoded and checked against
its type's schema in C, and encoded again in C (msgspec with sorted keys
writes exactly the canonical bytes): if that gives back the same bytes, the
text is canonical, the MAC is checked over it less its MAC field, and the
text is stored as it came. Without that comparison a terminal holding its
key could sign, and have stored, a record with spaces or keys out of order,
which the general path rejects.

Anything the fast path does not accept — a schema error anywhere in the batch,
text that is not canonical, a MAC that fails — goes to the general path in
`gateway.ingest.verify`, which re-encodes canonically and names the precise reason per
record. The fast path only ever accepts what the general path would accept.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from gateway.ingest.verify import Batch, Entry, Rejected, check_batch
from protocols import envelope, records, schema

_ID_BYTES = "".join(sorted(schema.ID_CHARS)).encode()
_HEX_BYTES = "".join(sorted(schema.HEX_CHARS)).encode()
# msgspec checks lengths in C; the character sets of ids and hex are checked by
# `charset_checker`, which is several times cheaper than a regex per field.
IdStr = Annotated[str, Meta(min_length=1, max_length=64)]


class _Fallback(Exception):
    pass


def to_type(spec, name: str = "Obj") -> Any:
    """The msgspec type for a schema: with `charset_checker`, it accepts exactly
    what `protocols.schema.check` accepts."""
    kind = spec[0]
    if kind == "str":
        return Annotated[str, Meta(max_length=spec[1])]
    if kind == "id":
        return IdStr
    if kind == "hex":  # ("hex", n) or ("hex", lo, hi): a variable-length one (an identity proof's card)
        return Annotated[str, Meta(min_length=spec[1], max_length=spec[-1])]
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


def charset_checker(spec, name: str):
    """A function checking, for a decoded value of `spec`, the character sets
    of every id (map keys included) and hex field: it gathers them and makes
    one test per kind, deleting the allowed bytes from their UTF-8 in C (a
    third of the time of a set test per character). Generated as source once
    at import, like dataclasses does, because a call per field cost more than
    the JSON decoding itself."""
    lines: list[str] = []
    counter = iter(range(1000))

    def has_checks(s) -> bool:
        kind = s[0]
        if kind in ("id", "hex", "map"):
            return True
        if kind == "list":
            return has_checks(s[1])
        if kind == "obj":
            return any(has_checks(sub) for sub, _ in s[1].values())
        return False

    def emit(s, expr: str, indent: str) -> None:
        kind = s[0]
        if kind == "id":
            lines.append(f"{indent}ids.append({expr})")
        elif kind == "hex":
            lines.append(f"{indent}hexes.append({expr})")
        elif kind == "list" and s[1][0] in ("id", "hex"):
            lines.append(f"{indent}{'ids' if s[1][0] == 'id' else 'hexes'} += {expr}")
        elif kind == "list" and has_checks(s[1]):
            item = f"x{next(counter)}"
            lines.append(f"{indent}for {item} in {expr}:")
            emit(s[1], item, indent + "    ")
        elif kind == "map" and not has_checks(s[1]):
            lines.append(f"{indent}ids += {expr}")  # its keys
        elif kind == "map":
            key, value = f"k{next(counter)}", f"x{next(counter)}"
            lines.append(f"{indent}for {key}, {value} in {expr}.items():")
            lines.append(f"{indent}    ids.append({key})")
            emit(s[1], value, indent + "    ")
        elif kind == "obj":
            if "." in expr:
                local = f"o{next(counter)}"
                lines.append(f"{indent}{local} = {expr}")
                expr = local
            for field, (sub, required) in s[1].items():
                if not has_checks(sub):
                    continue
                if required:
                    emit(sub, f"{expr}.{field}", indent)
                else:
                    value = f"o{next(counter)}"
                    lines.append(f"{indent}{value} = {expr}.{field}")
                    lines.append(f"{indent}if {value} is not UNSET:")
                    emit(sub, value, indent + "    ")

    emit(spec, "v", "    ")
    source = "\n".join([f"def check_{name}(v):", "    ids = []", "    hexes = []", *lines,
                        "    if ''.join(ids).encode().translate(None, ID) or "
                        "''.join(hexes).encode().translate(None, HEX):",
                        "        raise Fallback"])
    namespace = {"ID": _ID_BYTES, "HEX": _HEX_BYTES, "UNSET": msgspec.UNSET, "Fallback": _Fallback}
    exec(compile(source, f"<charset checker {name}>", "exec"), namespace)
    return namespace[f"check_{name}"]


class _Hmac:
    """HMAC-SHA256 of `record:` + a record, for one key, with the key's pads
    and the domain prefix hashed once: `hmac.digest` sets up an OpenSSL
    context per call, which cost more than hashing the record."""

    __slots__ = ("inner", "outer")

    def __init__(self, key: bytes):
        inner_pad, outer_pad = envelope.hmac_pads(key)
        self.inner = hashlib.sha256(inner_pad + envelope.RECORD_MAC_PREFIX)
        self.outer = hashlib.sha256(outer_pad)

    def hexdigest(self, message: bytes) -> str:
        inner = self.inner.copy()
        inner.update(message)
        outer = self.outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


_hmac_for = functools.lru_cache(maxsize=65536)(_Hmac)  # one per terminal key


BatchMsg = msgspec.defstruct(
    "BatchMsg",
    [("v", to_type(schema.INT(1, 1))), ("terminal", IdStr), ("after", to_type(schema.INT(0))),
     ("records", Annotated[list[msgspec.Raw], Meta(min_length=1, max_length=envelope.MAX_BATCH_RECORDS)])],
    forbid_unknown_fields=True,
)
_batch_decoder = msgspec.json.Decoder(BatchMsg)
_canonical = msgspec.json.Encoder(order="sorted").encode


def _free_form(spec) -> bool:
    kind = spec[0]
    if kind in ("list", "map"):
        return _free_form(spec[1])
    if kind == "obj":
        return any(_free_form(sub) for sub, _ in spec[1].values())
    return kind == "object"


def _record_spec(rtype: str):
    """The envelope with the body of one record type in it. A free-form
    object in a body would decode as raw bytes and be encoded back verbatim,
    so the canonical comparison would not cover it: refused here."""
    if _free_form(records.BODIES[rtype]):
        raise ValueError(f"record type {rtype}: a free-form object in a body defeats the fast path's canonical check")
    fields = dict(envelope.ENVELOPE[1])
    fields["type"] = (schema.ENUM(rtype), True)
    fields["body"] = (records.BODIES[rtype], True)
    return ("obj", fields)


# type name as it appears in a record's text -> (decoder of the whole record, charset check)
_by_type = {rtype.encode(): (msgspec.json.Decoder(to_type(_record_spec(rtype), "Record" + rtype.title())).decode,
                             charset_checker(_record_spec(rtype), rtype))
            for rtype in records.BODIES}
_TYPE_KEY = b'"type":"'
_MAC_FIELD = b',"mac":"'
_MAC_FIELD_LEN = len(_MAC_FIELD) + 64 + 1  # the key, 64 hex digits, the closing quote


def check_batch_fast(topic_terminal: str, payload: bytes, key_for) -> Batch | Rejected:
    """Same contract as `gateway.ingest.verify.check_batch`, several times faster on
    well-formed input."""
    if len(payload) > envelope.MAX_BATCH_BYTES:
        return Rejected(topic_terminal, "payload_too_large", f"{len(payload)} bytes > {envelope.MAX_BATCH_BYTES}")
    try:
        return _fast(topic_terminal, payload, key_for)
    except (_Fallback, msgspec.MsgspecError, UnicodeError, ValueError, RecursionError):
        # RecursionError: msgspec's answer to deep nesting (a 200 KB run of
        # `[`), which the general path names `malformed_json`.
        return check_batch(topic_terminal, payload, key_for)


def _fast(topic_terminal: str, payload: bytes, key_for) -> Batch | Rejected:
    msg = _batch_decoder.decode(payload)
    terminal = msg.terminal
    if terminal != topic_terminal:
        raise _Fallback
    key = key_for(terminal)
    if key is None:
        raise _Fallback
    mac = _hmac_for(key).hexdigest
    canonical, by_type = _canonical, _by_type
    entries = []
    append = entries.append
    sha256 = hashlib.sha256
    compare = hmac.compare_digest
    for item in msg.records:
        raw = bytes(item)
        # A canonical record ends `"type":"<type>","v":1}`: the type picks the decoder, which
        # takes only that type, so a wrong guess cannot pass.
        at = raw.rfind(_TYPE_KEY) + len(_TYPE_KEY)
        decoder = by_type.get(raw[at:raw.find(b'"', at)])
        if decoder is None:
            raise _Fallback
        decode, check = decoder
        r = decode(raw)
        check(r)
        if r.terminal != terminal or canonical(r) != raw:
            raise _Fallback
        # What was signed is the record without its MAC field, which in canonical
        # order follows the body; nothing after it can contain its key.
        cut = raw.rfind(_MAC_FIELD)
        signed = raw[:cut] + raw[cut + _MAC_FIELD_LEN:]
        if len(signed) > envelope.MAX_RECORD_BYTES or not compare(mac(signed), r.mac):
            raise _Fallback
        append(Entry(r.seq, True, raw.decode(), r.type, r.time, sha256(signed).hexdigest(), r.prev))
    return Batch(terminal, msg.after, entries)
