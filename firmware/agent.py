"""The terminal agent: the ledger and the uplink, the synced config and the
sales counter (`agent.counter`, firmware/counter.py: the public service API
that the kiosk UI and the simulator use).

`record` is the one door through which anything enters the ledger: it returns
only after the record is committed, and only then may the caller tell the clerk
"approved". The uplink is woken right after, so a sale reaches the gateway in
milliseconds when the network is up, and waits safely in the ledger when not.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Callable

from firmware.authclient import AuthClient
from firmware.config import AgentConfig
from firmware.configstore import ConfigStore
from firmware.counter import Counter
from firmware.ledger import Ledger, Stored
from firmware.sync import ConfigReceiver
from firmware.uplink import Uplink
from protocols import topics

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, config: AgentConfig, wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
                 on_acked: Callable[[int, int], None] | None = None, rng: random.Random | None = None):
        self.config = config
        self.terminal = config.terminal
        self.wall_ms = wall_ms
        self.ledger = Ledger(config.ledger_path, config.terminal, config.key, config.reserve_bytes)
        settings = config.counter
        config_path = settings.config_path or config.ledger_path.with_name(config.ledger_path.stem + ".config.db")
        self.config_store = ConfigStore(config_path, wall_ms)
        self.config_store.index_ledger(self.ledger)
        self.uplink = Uplink(self.ledger, config.uplink, versions=self.config_store.versions_map,
                             wall_ms=wall_ms, on_acked=on_acked)
        self.sync = ConfigReceiver(self.config_store, self.terminal, config.key,
                                   on_change=lambda name: self.uplink.publish_status())
        self.uplink.subscribe(topics.CONFIG, self.sync.on_message)
        rng = rng or random.Random()
        self.auth = AuthClient(self.uplink, config.key, rng, wall_ms)
        self.uplink.subscribe(topics.AUTH_RESP, self.auth.on_message)
        self.counter = Counter(self, self.config_store, self.auth, deadline_s=settings.deadline_ms / 1000,
                               trusted_keys=settings.registry_keys, clerk=settings.clerk, wall_ms=wall_ms, rng=rng)
        self.started_ms = wall_ms()

    def start(self) -> None:
        self.uplink.start()

    def stop(self) -> None:
        self.uplink.stop()
        self.ledger.close()
        self.config_store.close()

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
