"""The verification stage of ingest: everything done to a message before the
writer sees it (JSON, schema, HMAC: pure CPU), and the wire between the
verifier processes and the writer (msgpack of the results).

It sits apart from the writer (gateway/ingest/writer.py) and from the
verifier processes (gateway/ingest/verifier.py) so each imports it and
neither imports the other: a verifier process loads no store, follower or
writer code, and the two modules no longer import each other.
"""

from __future__ import annotations

import logging

import msgspec

from gateway.ingest.fastpath import check_batch_fast
from gateway.ingest.verify import Batch, Rejected
from gateway.ingest import alerts  # noqa: F401 - the texts of the alerts raised here
from protocols import envelope, topics

log = logging.getLogger(__name__)

class Status(msgspec.Struct, array_like=True, tag="S"):
    terminal: str
    message: dict | None


class Quarantine(msgspec.Struct, array_like=True, tag="Q"):
    topic: str
    rejected: Rejected
    payload: bytes


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[Batch | Status | Quarantine])


def encode_verified(items: list) -> bytes:
    """What a verifier process sends the writer: its results, as msgpack."""
    return _encoder.encode(items)


def decode_verified(data: bytes) -> list:
    return _decoder.decode(data)


def quarantine_item(topic: str, reason: str, detail: str, payload: bytes) -> Quarantine:
    """A message to be quarantined whole, without looking inside it."""
    parsed = topics.parse(topic)
    return Quarantine(topic, Rejected(parsed[0] if parsed else "", reason, detail), bytes(payload))


def verify_message(is_status: bool, topic: str, payload: bytes, key_for) -> object:
    """Everything done to a message before the writer sees it; pure CPU, so it
    can run in a verifier process (gateway.ingest.verifier) or inline.

    Never raises: whatever a message holds, it comes back verified, or as a
    rejection with a reason. An exception past the checks (a bug a hostile
    message found) quarantines that message as `verify_failed` instead of
    taking the verifier process, or the network thread, down with it."""
    parsed = topics.parse(topic)
    terminal = parsed[0] if parsed else ""
    try:
        if is_status:
            try:
                message = envelope.decode_status(payload)
            except envelope.Invalid as err:
                log.warning("bad status terminal=%s: %s", terminal, err)
                return Status(terminal, None)
            if message["terminal"] != terminal or key_for(terminal) is None:
                return Status(terminal, None)
            return Status(terminal, message)
        result = check_batch_fast(terminal, payload, key_for)
        if isinstance(result, Rejected):
            log.warning("message quarantined topic=%s reason=%s detail=%s", topic, result.reason, result.detail[:200])
            return Quarantine(topic, result, bytes(payload))
        return result
    except Exception as err:
        log.exception("verifying a message failed topic=%s", topic)
        if is_status:
            return Status(terminal, None)
        return quarantine_item(topic, "verify_failed", f"{type(err).__name__}: {err}"[:500], payload)
