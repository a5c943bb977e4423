"""Wires supervision into a gateway: the record hook on ingest, and the
periodic sweep (time-window rules, filing violations into cases, escalation).

Kept apart from `service.py` (MQTT) so ingest stays what it is and the pieces
here can be driven by a test with a fake clock.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from gateway.supervision import cases
from gateway.supervision.rules import engine

log = logging.getLogger(__name__)

# the monthly ranking reads the whole month: on a sped-up clock (the
# simulator) not more often than this many real seconds
TOP_BUYERS_REAL_S = 30.0


class Supervision:
    def __init__(self, conn, cfg: dict, clock: Callable[[], int], lock=None):
        """`conn` is a connection of its own (not the ingest writer's): sweeps
        take their own short write transactions."""
        self.conn = conn
        self.cfg = cfg
        self.clock = clock
        self.lock = lock or threading.RLock()
        catalogue, params = engine.current_config(conn)
        self.hook = engine.RecordHook(cfg, catalogue, params)
        self.sweeper = engine.Sweeper(conn, cfg, clock, params, top_buyers_real_s=TOP_BUYERS_REAL_S)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def attach(self, ingest) -> None:
        """The rules follow the stored records after commit (gateway/ingest/follow.py),
        so their cost never slows ingest down."""
        self.follower = ingest.follow("supervision", self.hook)

    def tick(self, now: int | None = None) -> None:
        now = self.clock() if now is None else now
        with self.lock:
            self.hook.forget()
            catalogue, params = engine.current_config(self.conn)
            if catalogue:
                self.hook.catalogue = catalogue  # a pushed catalogue applies from the next record on
            if params:
                self.hook.params = self.sweeper.params = params
                self.hook.required_identity = params.get("restricted_identity", "card+face")
            self.sweeper.tick(now)
            self.sweeper._tx(lambda: cases.file_new_violations(self.conn, now, self.cfg))
            self.sweeper._tx(lambda: cases.escalate_due(self.conn, now, self.cfg))
            self.sweeper._tx(lambda: cases.refresh_grades(self.conn, now, self.cfg))

    def start(self, interval: float = 2.0) -> None:
        def loop():
            while not self._stop.wait(interval):
                try:
                    self.tick()
                except Exception:
                    log.exception("supervision sweep failed")
        self._thread = threading.Thread(target=loop, name="supervision", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
