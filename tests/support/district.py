"""A small district for fault drills: a real Mosquitto on the configuration
the project generates (`gateway terminal broker-auth`: per-terminal
credentials and ACLs, client ids bound to usernames, TLS listeners from a
throwaway CA made for the run), the gateway and the terminal agents as real
processes over TLS, optionally behind `netem` links that can cut the shops'
network.

Every second terminal (T002, T004, ...) authenticates with a client
certificate on the broker's certificate listener, the others with their
password over TLS, so every drill runs both ways."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from firmware.ledger import export_lines
from gateway.enforcement import fleet, pki
from gateway.store import Store
from simulator.broker import Mosquitto
from simulator.netem import Link
from simulator.processes import GatewayProcess, TerminalProcess, provision_terminals, terminal_config_text, wait_for

GATEWAY_PASSWORD = "gateway-test-password"


def ledger_head(path: Path) -> int:
    if not path.exists():
        return 0
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        return conn.execute("SELECT coalesce(max(seq), 0) FROM ledger").fetchone()[0]
    finally:
        conn.close()


class Links:
    """The shops' network, in front of both TLS listeners: cut and restored together."""

    def __init__(self, broker: Mosquitto):
        self.password = Link("127.0.0.1", broker.tls_port, scheme="mqtts").start()
        self.cert = Link("127.0.0.1", broker.cert_port, scheme="mqtts").start()

    def cut(self) -> None:
        self.password.cut()
        self.cert.cut()

    def unplug(self) -> None:
        self.password.unplug()
        self.cert.unplug()

    def restore(self) -> None:
        self.password.restore()
        self.cert.restore()

    def close(self) -> None:
        self.password.close()
        self.cert.close()


class District:
    def __init__(self, root: Path, terminals: int = 3, rate: float = 20.0, count: int = 0,
                 via_link: bool = False, ack_timeout: float = 3.0):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.names = [f"T{i + 1:03d}" for i in range(terminals)]
        self.db = self.root / "gateway.db"
        self.creds = provision_terminals(self.db, self.names)
        self.pki = pki.Pki(self.root / "pki")   # a throwaway CA for this district only
        self.pki.init()
        self.cert_terminals = set(self.names[1::2])
        store = Store(self.db)
        try:
            self.broker = Mosquitto.generated(self.root / "broker", store, GATEWAY_PASSWORD, pki_dir=self.pki.dir)
        finally:
            store.close()
        self.broker.start()
        self.link = Links(self.broker) if via_link else None
        self.gateway = GatewayProcess(self.db, self.broker.tls_url, self.root / "gateway.log",
                                      username=fleet.GATEWAY_USER, password=GATEWAY_PASSWORD, ca=self.broker.ca)
        self.terminals: dict[str, TerminalProcess] = {}
        self.ledgers: dict[str, Path] = {}
        for i, creds in enumerate(self.creds):
            ledger = self.root / f"{creds.terminal}.ledger.db"
            config = self.root / f"{creds.terminal}.toml"
            if creds.terminal in self.cert_terminals:
                issued = self.pki.issue(creds.terminal)
                url = self.link.cert.url if self.link else self.broker.cert_url
                tls = {"cert": issued.cert, "key": issued.key}
            else:
                url = self.link.password.url if self.link else self.broker.tls_url
                tls = {}
            config.write_text(terminal_config_text(creds, url, ledger, ack_timeout=ack_timeout, ca=self.broker.ca,
                                                   **tls))
            self.ledgers[creds.terminal] = ledger
            self.terminals[creds.terminal] = TerminalProcess(config, self.root / f"{creds.terminal}.log",
                                                             rate=rate, count=count, seed=i + 1)

    def start(self) -> "District":
        self.gateway.start().wait_subscribed()
        for terminal in self.terminals.values():
            terminal.start()
        return self

    def close(self) -> None:
        for terminal in self.terminals.values():
            terminal.kill()
        self.gateway.kill()
        if self.link:
            self.link.close()
        self.broker.kill()

    # -- observing

    def stored(self) -> int:
        store = Store(self.db)
        try:
            return store.count_records()
        finally:
            store.close()

    def approved(self) -> int:
        return sum(t.approved_count() for t in self.terminals.values())

    def acked(self) -> dict[str, int]:
        store = Store(self.db)
        try:
            return {t["id"]: t["acked_upto"] for t in store.terminals()}
        finally:
            store.close()

    def synced(self) -> bool:
        acked = self.acked()
        return all(acked.get(name, 0) == ledger_head(path) > 0 for name, path in self.ledgers.items())

    def stop_selling(self) -> None:
        """Close every counter and wait for each agent to confirm it: after
        this, the approved lists and the ledgers no longer change."""
        for terminal in self.terminals.values():
            terminal.stop_selling()

    def wait_selling(self, at_least: int, timeout: float = 60) -> None:
        wait_for(lambda: self.approved() >= at_least, timeout, f"{at_least} approved sales")

    def wait_synced(self, timeout: float = 120) -> None:
        wait_for(self.synced, timeout, "every ledger acknowledged by the gateway", interval=0.25)

    def alerts(self) -> list[dict]:
        store = Store(self.db)
        try:
            return store.alerts()
        finally:
            store.close()

    def assert_consistent(self) -> None:
        """Every ledger equals what the gateway stored for it: nothing missing,
        nothing twice, nothing altered; every sale reported approved is there.

        Only meaningful once no counter sells (`stop_selling`, or the agent is
        dead): a sale committed between reading a ledger and reading the
        approved list would otherwise look lost."""
        assert_ledgers_stored(Store(self.db), self.terminals, self.ledgers)


def assert_ledgers_stored(store: Store, terminals: dict, ledgers: dict) -> None:
    """Each terminal's ledger (`ledgers`: name -> path) equals what `store`
    holds for it, in order from seq 1, with every sale its agent reported
    approved; nothing else stored, nothing quarantined. Closes `store`."""
    still_selling = [name for name, t in terminals.items() if t.selling()]
    assert not still_selling, f"compared while {still_selling} still sell: call stop_selling() first"
    try:
        total = 0
        for name, path in ledgers.items():
            ledger = list(export_lines(path))
            gateway = list(store.export(name))
            assert gateway == ledger, f"{name}: ledger has {len(ledger)} rows, gateway {len(gateway)}"
            seqs = [json.loads(text)["seq"] for text in ledger]
            assert seqs == list(range(1, len(seqs) + 1)), f"{name}: ledger sequence has holes"
            missing = set(terminals[name].approved) - set(seqs)
            assert not missing, f"{name}: approved sales missing from the ledger: {sorted(missing)[:10]}"
            total += len(ledger)
        assert store.count_records() == total
        assert store.quarantined() == []
    finally:
        store.close()
