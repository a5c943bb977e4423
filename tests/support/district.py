"""A small district for fault drills: a real Mosquitto with per-terminal
credentials and ACLs, the gateway and the terminal agents as real processes,
optionally behind a `netem.Link` that can cut a shop's network."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from firmware.ledger import export_lines
from gateway import fleet
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


class District:
    def __init__(self, root: Path, terminals: int = 3, rate: float = 20.0, count: int = 0,
                 via_link: bool = False, ack_timeout: float = 3.0):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.names = [f"T{i + 1:03d}" for i in range(terminals)]
        self.db = self.root / "gateway.db"
        self.creds = provision_terminals(self.db, self.names)
        store = Store(self.db)
        passwd, acl = fleet.write_broker_auth(store, self.root / "broker-auth", GATEWAY_PASSWORD)
        store.close()
        self.broker = Mosquitto(self.root / "broker", password_file=passwd, acl_file=acl).start()
        self.link = Link("127.0.0.1", self.broker.port).start() if via_link else None
        url = self.link.url if self.link else self.broker.url
        self.gateway = GatewayProcess(self.db, self.broker.url, self.root / "gateway.log",
                                      username=fleet.GATEWAY_USER, password=GATEWAY_PASSWORD)
        self.terminals: dict[str, TerminalProcess] = {}
        self.ledgers: dict[str, Path] = {}
        for i, creds in enumerate(self.creds):
            ledger = self.root / f"{creds.terminal}.ledger.db"
            config = self.root / f"{creds.terminal}.toml"
            config.write_text(terminal_config_text(creds, url, ledger, ack_timeout=ack_timeout))
            self.ledgers[creds.terminal] = ledger
            self.terminals[creds.terminal] = TerminalProcess(config, self.root / f"{creds.terminal}.log",
                                                             rate=rate, count=count, seed=i + 1)

    def start(self) -> "District":
        self.gateway.start()
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
        still_selling = [name for name, t in self.terminals.items() if t.selling()]
        assert not still_selling, f"compared while {still_selling} still sell: call stop_selling() first"
        store = Store(self.db)
        try:
            total = 0
            for name, path in self.ledgers.items():
                ledger = list(export_lines(path))
                gateway = list(store.export(name))
                assert gateway == ledger, f"{name}: ledger has {len(ledger)} rows, gateway {len(gateway)}"
                seqs = [json.loads(text)["seq"] for text in ledger]
                assert seqs == list(range(1, len(seqs) + 1)), f"{name}: ledger sequence has holes"
                missing = set(self.terminals[name].approved) - set(seqs)
                assert not missing, f"{name}: approved sales missing from the ledger: {sorted(missing)[:10]}"
                total += len(ledger)
            assert store.count_records() == total
            assert store.quarantined() == []
        finally:
            store.close()
