"""Turn one uplink message into verified records and precise rejections.

Pure except for the key lookup passed in, so the fuzz tests can throw any bytes
at it: whatever arrives, the result is a `Batch` (records checked one by one, a
bad record rejected on its own) or a `Rejected` message with a reason code,
never an exception.
"""

from __future__ import annotations

from typing import Callable

import msgspec

from protocols import canonical, envelope


class Entry(msgspec.Struct, array_like=True, gc=False):
    """One position of a batch: a verified record, or a rejected one.
    (msgspec structs: built in C, and they cross from verifier processes as
    msgpack arrays; named tuples cost a Python call each way.)"""
    seq: int | None
    ok: bool
    text: str = ""           # canonical stored text (verified) or raw JSON (rejected)
    type: str = ""
    time: int = 0
    digest: str = ""
    prev: str = ""
    reason: str = ""
    detail: str = ""


class Batch(msgspec.Struct, array_like=True, tag="B"):
    terminal: str
    after: int
    entries: list[Entry]


class Rejected(msgspec.Struct, array_like=True, tag="R"):
    terminal: str | None
    reason: str
    detail: str


def check_batch(topic_terminal: str, payload: bytes, key_for: Callable[[str], bytes | None]) -> Batch | Rejected:
    try:
        terminal, after, records = envelope.decode_batch(payload)
    except envelope.Invalid as err:
        return Rejected(topic_terminal, err.code, err.detail)
    if terminal != topic_terminal:
        return Rejected(topic_terminal, "terminal_mismatch", f"batch says {terminal}, topic says {topic_terminal}")
    key = key_for(terminal)
    if key is None:
        return Rejected(terminal, "unknown_terminal", terminal)
    return Batch(terminal, after, [check_record(terminal, record, key) for record in records])


def check_record(terminal: str, record: dict, key: bytes) -> Entry:
    seq = record.get("seq")
    if not (isinstance(seq, int) and not isinstance(seq, bool) and 0 < seq <= canonical.MAX_SAFE_INT):
        seq = None
    try:
        if record.get("terminal") != terminal:
            raise envelope.Invalid("terminal_mismatch", f"record says {record.get('terminal')!r}")
        digest, stored = envelope.verify_record(record, key)
        return Entry(seq, True, stored, record["type"], record["time"], digest, record["prev"])
    except envelope.Invalid as err:
        return Entry(seq, False, _raw(record), reason=err.code, detail=err.detail[:500])
    except (canonical.NotCanonical, canonical.TooDeep) as err:
        return Entry(seq, False, _raw(record), reason="schema_invalid", detail=str(err)[:500])
    except UnicodeError:
        # A JSON escape of a lone surrogate (`"\\ud800"`) decodes to a string
        # that has no UTF-8 form, so the record cannot be signed or stored.
        return Entry(seq, False, _raw(record), reason="not_utf8", detail="a string holds a lone surrogate")


def _raw(record) -> str:
    """The rejected record's text for the quarantine: always encodable as
    UTF-8 (a lone surrogate is kept as its escape), so that storing it, or
    sending it from a verifier process, cannot fail."""
    try:
        text = canonical.dumps(record)
    except (ValueError, canonical.TooDeep):
        text = repr(record)[:16384]
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
