"""The terminal agent: the ledger and the uplink, behind the public service API
that the kiosk UI and the simulator use.

`record` is the one door through which anything enters the ledger: it returns
only after the record is committed, and only then may the caller tell the clerk
"approved". The uplink is woken right after, so a sale reaches the gateway in
milliseconds when the network is up, and waits safely in the ledger when not.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from firmware.config import AgentConfig
from firmware.ledger import Ledger, Stored
from firmware.uplink import Uplink

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, config: AgentConfig, wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
                 on_acked: Callable[[int, int], None] | None = None):
        self.config = config
        self.terminal = config.terminal
        self.wall_ms = wall_ms
        self.ledger = Ledger(config.ledger_path, config.terminal, config.key, config.reserve_bytes)
        self.uplink = Uplink(self.ledger, config.uplink, wall_ms=wall_ms, on_acked=on_acked)
        self.started_ms = wall_ms()

    def start(self) -> None:
        self.uplink.start()

    def stop(self) -> None:
        self.uplink.stop()
        self.ledger.close()

    def record(self, rtype: str, body: dict) -> Stored:
        """Commit a record; raises LedgerError (disk full, read-only) with a reason code."""
        stored = self.ledger.append(rtype, body, self.wall_ms())
        self.uplink.notify()
        return stored

    def status(self) -> dict:
        return {
            "terminal": self.terminal,
            "online": self.uplink.connected,
            "head": self.ledger.head,
            "acked": self.ledger.acked,
            "backlog": self.ledger.backlog,
            "last_ack_ms": self.uplink.last_ack_wall_ms,
        }
