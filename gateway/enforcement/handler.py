"""Quota enforcement wired into the gateway service: the online authorization worker and the config pusher, behind three calls
the MQTT side makes (`start`, `stop`, `on_message`), so the service module stays
a thin dispatcher instead of growing into one that does everything.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from gateway.enforcement import quota
from gateway.enforcement.authz import AuthService
from gateway.enforcement.configpush import ConfigPusher
from gateway.ingest.writer import Ingest
from gateway.store import Store
from gateway.store import leader
from gateway.store.leader import Leadership
from protocols import topics
from protocols.clock import wall_ms as now_ms

log = logging.getLogger(__name__)


class Enforcement:
    """Every worker authorizes and answers statuses; the config push's
    periodic sweep runs in the one worker of the fleet that holds the
    `config-push` role (gateway/store/leader.py), polled every `POLL_S`: a
    standby takes it over within 10 s of its holder's death, and a holder
    that lost its database session stops sweeping at its next poll (a
    balances push sent twice in that second is harmless: a terminal keeps
    one copy of a version)."""

    ROLE = leader.CONFIG_PUSH
    POLL_S = 1.0

    def __init__(self, store: Store, ingest: Ingest, publish: Callable[[str, bytes, int, bool], None],
                 wall_ms: Callable[[], int] = now_ms,
                 balances_every_s: float = 30.0):
        """`publish(topic, payload, qos, retain)` is the service's MQTT client."""
        self._publish = publish
        self.leadership = Leadership(store.path, self.ROLE)
        self.leading = threading.Event()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.cache = quota.ConfigCache()
        # Stored records are applied to the balances by a follower in the
        # supervision process (gateway/cli/supervision_process.py), after ingest's
        # commit: applying a sale costs far more than storing it, and must not
        # hold up the acks or take the interpreter from the network thread.
        self.authz = AuthService(store, self._respond, self.cache, wall_ms=wall_ms, key_for=ingest.key_for)
        self.config = ConfigPusher(store.path, self._push, ingest.key_for, wall_ms=wall_ms,
                                   balances_every_s=balances_every_s, leading=self.leading.is_set)

    def start(self) -> None:
        self.authz.start()
        self.config.start()
        self._poller = threading.Thread(target=self._lead, name="config-push-leader", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self._poller:
            self._poller.join(timeout=10)
        self.authz.stop()
        self.config.stop()
        self.leading.clear()
        self.leadership.release()

    def _lead(self) -> None:
        while True:
            try:
                held = self.leadership.try_acquire()
            except Exception:
                log.exception("config-push leadership check failed")
                held = False
            if held != self.leading.is_set():
                if held:
                    self.leading.set()
                    log.info("leader: this process now leads role=%s holder=%s", self.ROLE, self.leadership.name)
                else:
                    self.leading.clear()
                    log.warning("leader: lost role=%s holder=%s", self.ROLE, self.leadership.name)
            if self._stop.wait(self.POLL_S):
                return

    def on_message(self, terminal: str, leaf: str, payload: bytes) -> None:
        if leaf == topics.AUTH_REQ:
            self.authz.submit(terminal, payload)
        elif leaf == topics.STATUS:
            self.config.on_status(terminal, payload)

    def _respond(self, terminal: str, payload: bytes) -> None:
        self._publish(topics.topic(terminal, topics.AUTH_RESP), payload, 1, False)

    def _push(self, terminal: str, payload: bytes, retain: bool) -> None:
        self._publish(topics.topic(terminal, topics.CONFIG), payload, 1, retain)
