"""The terminal agent: the ledger and the uplink, the synced config and the
sales counter (`agent.counter`, firmware/counter.py: the public service API
that the kiosk UI and the simulator use), and the face check (`agent.face`)
matching against the gallery config sync delivers (`agent.face_gallery`).

`record` is the one door through which anything enters the ledger: it returns
only after the record is committed, and only then may the caller tell the clerk
"approved". The uplink is woken right after, so a sale reaches the gateway in
milliseconds when the network is up, and waits safely in the ledger when not.
"""

from __future__ import annotations

import logging
import random
from typing import Callable

from firmware.authclient import AuthClient
from firmware.config import AgentConfig
from firmware.configstore import ConfigStore
from firmware.counter import Counter
from firmware.face.matching import MatchConfig
from firmware.face.service import FaceService
from firmware.face.synced import SyncedGallery, device_key
from firmware.ledger import Ledger, Stored
from firmware import prices
from firmware.prices import PriceList
from firmware.sync import ConfigReceiver
from firmware.uplink import Uplink
from protocols import topics
from protocols.clock import wall_ms as now_ms

log = logging.getLogger(__name__)


def _synced_gallery(config: AgentConfig) -> SyncedGallery:
    stem = config.ledger_path.stem
    path = config.face.gallery or config.ledger_path.with_name(stem + ".gallery.aqf")
    key, problem = device_key(config.face.key_file, config.ledger_path.with_name(stem + ".face.key"))
    return SyncedGallery(path, key, problem)


class Agent:
    def __init__(self, config: AgentConfig, wall_ms: Callable[[], int] = now_ms,
                 on_acked: Callable[[int, int], None] | None = None, rng: random.Random | None = None,
                 network=None):
        """`network`: a loop shared with other agents' connections (the
        simulator's fleet, simulator/netloop.py); by default the uplink runs
        paho's own network thread."""
        self.config = config
        self.terminal = config.terminal
        self.wall_ms = wall_ms
        self.ledger = Ledger(config.ledger_path, config.terminal, config.key, config.reserve_bytes)
        settings = config.counter
        config_path = settings.config_path or config.ledger_path.with_name(config.ledger_path.stem + ".config.db")
        self.face_gallery = _synced_gallery(config)
        self.face = FaceService(None, self.face_gallery.current,
                                MatchConfig(config.face.max_distance, config.face.min_margin))
        self.face_gallery.subscribe(self.face.set_gallery)
        self.config_store = ConfigStore(config_path, wall_ms, gallery=self.face_gallery)
        self.config_store.index_ledger(self.ledger)
        self.uplink = Uplink(self.ledger, config.uplink, config.key, versions=self.config_store.versions_map,
                             wall_ms=wall_ms, on_acked=on_acked, network=network)
        self.sync = ConfigReceiver(self.config_store, self.terminal, config.key,
                                   on_change=lambda name: self.uplink.publish_status())
        self.uplink.subscribe(topics.CONFIG, self.sync.on_message)
        rng = rng or random.Random()
        self.auth = AuthClient(self.uplink, config.key, rng, wall_ms)
        self.uplink.subscribe(topics.AUTH_RESP, self.auth.on_message)
        self.prices = PriceList(prices.beside(config.ledger_path))
        self.counter = Counter(self, self.config_store, self.auth, deadline_s=settings.deadline_ms / 1000,
                               trusted_keys=settings.registry_keys, clerk=settings.clerk, wall_ms=wall_ms, rng=rng,
                               prices=self.prices)
        self.started_ms = wall_ms()

    def start(self) -> None:
        self.uplink.start()

    def stop(self) -> None:
        self.uplink.stop()
        self.ledger.close()
        self.config_store.close()
        self.prices.close()

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
