"""Online authorization, terminal side: one request on `auth/req`, wait for the
answer with the same correlation id on `auth/resp`, at most a deadline.

No answer in time (gateway down, broker slow, link cut) returns None and the
counter decides offline. An answer arriving after that is ignored here; the
gateway matches the late authorization to the offline sale record by `sale_id`
and counts the sale once. Responses are MAC-checked with the terminal key, so
only the gateway can approve a sale online, and a response is taken only for
the request with its `id` *and* `sale_id` (docs/protocol.md): a genuine answer
to another sale, replayed or misrouted, must not approve this one.
"""

from __future__ import annotations

import logging
import threading
import time

from firmware.uplink import Uplink
from protocols import authz, topics

log = logging.getLogger(__name__)


class AuthClient:
    def __init__(self, uplink: Uplink, key: bytes, rng, wall_ms, monotonic=time.monotonic):
        self.uplink = uplink
        self.terminal = uplink.terminal
        self._key = key
        self._rng = rng
        self._wall_ms = wall_ms
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._pending: dict[str, list] = {}   # correlation id -> [event, response]
        self.late = 0
        self.last_rtt_ms: float | None = None

    def new_id(self) -> str:
        with self._lock:
            return "%016x" % self._rng.getrandbits(64)

    def request(self, sale_id: str, subject: str, identity: str, cart: list, deadline_s: float,
                card: str | None = None, clerk: str | None = None, request_id: str | None = None,
                proof: dict | None = None) -> dict | None:
        """The verified response, or None when there is none within the deadline.
        `proof`: the identity proof (`authz.PROOF`); without it the gateway
        refuses a claimed identity (`identity_unproven`)."""
        if not self.uplink.connected:
            return None
        request_id = request_id or self.new_id()
        payload = authz.encode_request(self._key, self.terminal, request_id, sale_id, self._wall_ms(), subject,
                                       identity, cart, card=card, clerk=clerk, proof=proof)
        slot = [threading.Event(), None, sale_id]
        with self._lock:
            self._pending[request_id] = slot
        started = self._monotonic()
        try:
            if not self.uplink.publish(topics.AUTH_REQ, payload, qos=1):
                return None
            if not slot[0].wait(deadline_s):
                log.info("authorization timed out terminal=%s sale=%s after_ms=%d",
                         self.terminal, sale_id, deadline_s * 1000)
                return None
            self.last_rtt_ms = (self._monotonic() - started) * 1000
            return slot[1]
        finally:
            with self._lock:
                self._pending.pop(request_id, None)

    def on_message(self, payload: bytes) -> None:
        """Called on the MQTT network thread for each message on auth/resp."""
        try:
            response = authz.decode_response(payload, self._key)
        except authz.Invalid as err:
            log.warning("authorization response rejected terminal=%s reason=%s", self.terminal, err.code)
            return
        if response["terminal"] != self.terminal:
            return
        with self._lock:
            slot = self._pending.get(response["id"])
        if slot is None:
            self.late += 1
            log.info("late authorization response ignored terminal=%s sale=%s", self.terminal, response["sale_id"])
            return
        if response["sale_id"] != slot[2]:
            log.warning("authorization response for another sale ignored terminal=%s id=%s sale=%s asked=%s",
                        self.terminal, response["id"], response["sale_id"], slot[2])
            return
        slot[1] = response
        slot[0].set()
