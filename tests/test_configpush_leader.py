"""The config push's periodic sweep runs in one worker of the fleet: the
holder of the `config-push` role, which sweeps every terminal online in the
database (not only those whose statuses it received) with the versions the
fleet watcher stored; the other workers sweep nothing, and one of them takes
the sweep over when the holder goes. Answering a status stays with whichever
worker receives it."""

from __future__ import annotations

import json
import time

from gateway import store as gw_store
from gateway.enforcement.fleet import provision
from gateway.enforcement.handler import Enforcement
from gateway.store import Store
from gateway.store.leader import holder
from protocols import configsync, envelope, topics
from simulator.processes import wait_for
from tests.support.inline_ingest import InlineIngest as Ingest
from tests.support.store_backends import backend_db  # noqa: F401 - a fixture
from tests.support.supervision import KEY


class Worker:
    """One gateway worker's enforcement side, its publishes recorded."""

    def __init__(self, url: str):
        self.store = Store(url)
        self.sent: list[tuple[str, bool]] = []   # (topic, retain)
        self.ingest = Ingest(self.store, lambda *a: None)
        self.enforcement = Enforcement(self.store, self.ingest,
                                       lambda topic, payload, qos, retain: self.sent.append((topic, retain)))
        self.enforcement.start()

    def close(self) -> None:
        self.enforcement.stop()
        self.store.close()


def online(url: str, terminal: str, versions: dict | None) -> None:
    """What every worker's ingest (terminals.state) and the leader's fleet
    watcher (terminal_status) keep of a terminal's status."""
    conn = gw_store.connect(url)
    try:
        conn.execute("UPDATE terminals SET state = 'online' WHERE id = ?", [terminal])
        if versions is not None:
            conn.execute("INSERT INTO terminal_status(terminal, state, versions) VALUES (?, 'online', ?)",
                         [terminal, json.dumps({k: str(v) for k, v in versions.items()})])
    finally:
        conn.close()


def test_only_the_holder_sweeps_every_online_terminal_and_a_standby_takes_over(backend_db):
    url = backend_db
    s = Store(url)
    try:
        for name in ("T1", "T2"):
            provision(s, name, f"shop-{name}", 0, key_hex=KEY.hex())
    finally:
        s.close()
    a = Worker(url)
    b = None
    try:
        wait_for(a.enforcement.leading.is_set, 10, "the first worker to lead")
        b = Worker(url)
        time.sleep(2 * Enforcement.POLL_S)   # the standby's polls
        assert not b.enforcement.leading.is_set()
        assert holder(url, Enforcement.ROLE) == a.enforcement.leadership.name

        # T1 told some worker it runs catalogue 1 only; T2's status was never stored by a watcher
        online(url, "T1", {configsync.CATALOGUE: 1})
        online(url, "T2", None)
        assert b.enforcement.config.sweep() == 0 and b.sent == []
        assert a.enforcement.config.sweep() > 0
        config_topics = {t for t, _ in a.sent}
        assert config_topics == {topics.topic("T1", topics.CONFIG), topics.topic("T2", topics.CONFIG)}

        a.close()
        a = None
        wait_for(b.enforcement.leading.is_set, 10, "the standby to take the sweep over")
        assert b.enforcement.config.sweep() > 0
        assert {t for t, _ in b.sent} == config_topics
    finally:
        for w in (a, b):
            if w:
                w.close()


def test_a_status_is_answered_by_the_worker_that_receives_it_leader_or_not(backend_db):
    url = backend_db
    s = Store(url)
    try:
        provision(s, "T1", "shop-T1", 0, key_hex=KEY.hex())
    finally:
        s.close()
    a = Worker(url)
    b = None
    try:
        wait_for(a.enforcement.leading.is_set, 10, "the first worker to lead")
        b = Worker(url)
        status = envelope.encode_status("T1", "online", int(time.time() * 1000), versions={})
        b.enforcement.on_message("T1", topics.STATUS, status)
        wait_for(lambda: any(retain for _, retain in b.sent), 10, "the standby's answer (chunks and manifest)")
        assert not b.enforcement.leading.is_set() and a.sent == []
    finally:
        for w in (a, b):
            if w:
                w.close()
