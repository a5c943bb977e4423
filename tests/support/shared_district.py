"""A district whose gateway is several workers on PostgreSQL (issue 16,
section 4): a real Mosquitto on the generated configuration with a broker user
per worker (`broker-auth --workers N`), N `gateway run --share-group`
processes, each its own user and session, one PostgreSQL database on a
private cluster the drill can restart, and real terminal agents selling.

The broker listens in plain MQTT on the loopback: the TLS listeners are the
subject of tests/support/district.py's drills, the sharing is this one's."""

from __future__ import annotations

import getpass
import sqlite3
from pathlib import Path

from gateway.enforcement import brokerconf, fleet
from gateway.store import Store
from simulator.broker import Mosquitto, free_port
from simulator.processes import GatewayProcess, TerminalProcess, provision_terminals, terminal_config_text, wait_for
from tests.support.district import assert_ledgers_stored

GATEWAY_PASSWORD = "shared-gateway-password"
GROUP = "drill"


def ledger_head(path: Path) -> int:
    if not path.exists():
        return 0
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        return conn.execute("SELECT coalesce(max(seq), 0) FROM ledger").fetchone()[0]
    finally:
        conn.close()


class SharedDistrict:
    def __init__(self, root: Path, db_url: str, workers: int = 2, terminals: int = 3, rate: float = 20.0,
                 count: int = 0, ack_timeout: float = 3.0):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = db_url
        self.names = [f"T{i + 1:03d}" for i in range(terminals)]
        self.creds = provision_terminals(db_url, self.names)
        port = free_port()
        store = Store(db_url)
        try:
            files = brokerconf.write(store, self.root / "auth", GATEWAY_PASSWORD,
                                     brokerconf.Listeners(port, None, None, "127.0.0.1"),
                                     data_dir=self.root / "broker", log_file=self.root / "broker" / "mosquitto.log",
                                     run_as=getpass.getuser(), workers=workers)
        finally:
            store.close()
        self.broker = Mosquitto(self.root / "broker", port, config=files.conf).start()
        self.workers = [GatewayProcess(db_url, self.broker.url, self.root / f"worker{n}.log",
                                       username=fleet.worker_user(n), password=GATEWAY_PASSWORD,
                                       extra_args=["--share-group", GROUP, "--no-supervision", "--verifiers", "1"])
                        for n in range(1, workers + 1)]
        self.terminals: dict[str, TerminalProcess] = {}
        self.ledgers: dict[str, Path] = {}
        for i, creds in enumerate(self.creds):
            ledger = self.root / f"{creds.terminal}.ledger.db"
            config = self.root / f"{creds.terminal}.toml"
            config.write_text(terminal_config_text(creds, self.broker.url, ledger, ack_timeout=ack_timeout))
            self.ledgers[creds.terminal] = ledger
            self.terminals[creds.terminal] = TerminalProcess(config, self.root / f"{creds.terminal}.log",
                                                             rate=rate, count=count, seed=i + 1)

    def start(self) -> "SharedDistrict":
        for worker in self.workers:
            worker.start()
        for worker in self.workers:
            worker.wait_subscribed()
        for terminal in self.terminals.values():
            terminal.start()
        return self

    def close(self) -> None:
        for terminal in self.terminals.values():
            terminal.kill()
        for worker in self.workers:
            worker.kill()
        self.broker.kill()

    # -- observing

    def _store(self) -> Store:
        return Store(self.db)

    def approved(self) -> int:
        return sum(t.approved_count() for t in self.terminals.values())

    def acked(self) -> dict[str, int]:
        store = self._store()
        try:
            return {t["id"]: t["acked_upto"] for t in store.terminals()}
        finally:
            store.close()

    def synced(self) -> bool:
        try:
            acked = self.acked()
        except Exception:  # the database is restarting
            return False
        return all(acked.get(name, 0) == ledger_head(path) > 0 for name, path in self.ledgers.items())

    def stop_selling(self) -> None:
        for terminal in self.terminals.values():
            terminal.stop_selling()

    def wait_selling(self, at_least: int, timeout: float = 90) -> None:
        wait_for(lambda: self.approved() >= at_least, timeout, f"{at_least} approved sales")

    def wait_synced(self, timeout: float = 180) -> None:
        wait_for(self.synced, timeout, "every ledger acknowledged by the gateway", interval=0.25)

    def stop_workers(self) -> dict[str, int]:
        """Stop every worker politely; returns how many records each one's
        writer stored in its last run (its closing log line), to show that
        the broker shared the load."""
        out = {}
        for worker in self.workers:
            start = worker.log_path.stat().st_size
            worker.stop()
            text = worker.log_path.read_bytes()[start:].decode(errors="replace")
            stored = [int(part.split("=")[1]) for line in text.splitlines() if "ingest writer stopped" in line
                      for part in line.split() if part.startswith("stored=")]
            out[worker.username] = stored[-1] if stored else 0
        return out

    def alerts(self) -> list[dict]:
        store = self._store()
        try:
            return store.alerts()
        finally:
            store.close()

    def assert_consistent(self) -> None:
        """Every ledger equals what the gateway stored for it: nothing missing,
        nothing twice, nothing altered; every sale reported approved is there."""
        assert_ledgers_stored(self._store(), self.terminals, self.ledgers)
