"""`python -m simulator demo`: the district demo on embedded defaults.

Starts a Mosquitto and the gateway (SQLite) in ./var/demo (emptied first), registers a fleet of
simulated shop terminals, and keeps them selling, with a live view of what the
gateway has stored, until Ctrl-C (or --duration seconds). Every sale goes
through the real terminal agent and the real gateway over the real broker.

What is still to come (see the open issues): the district model with towns and
farmers, quota enforcement at the counter, the supervision dashboard and the
kiosk UI; this demo grows with them.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from gateway.store import Store
from simulator.broker import Mosquitto
from simulator.fleet import Fleet
from simulator.processes import GatewayProcess, provision_terminals
from simulator.run_cli import percentile, reconcile

ROOT = Path(__file__).resolve().parents[1]


def _view(fleet: Fleet, db: Path, started: float, broker_url: str) -> Table:
    store = Store(db)
    try:
        stored = store.count_records()
        alerts = len(store.alerts())
    finally:
        store.close()
    table = Table(title=f"district demo · broker {broker_url} · gateway db {db}")
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("terminals", str(len(fleet.agents)))
    table.add_row("sales committed at terminals", f"{fleet.sold:,}")
    table.add_row("records stored at the gateway", f"{stored:,}")
    table.add_row("waiting to upload", f"{fleet.backlog():,}")
    lat = fleet.latencies_ms[-2000:]
    if lat:
        table.add_row("commit → gateway ack p50 / p99", f"{percentile(lat, 50):.0f} / {percentile(lat, 99):.0f} ms")
    table.add_row("gateway alerts", str(alerts))
    table.add_row("running for", f"{time.monotonic() - started:,.0f} s")
    return table


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--terminals", type=int, default=20)
    parser.add_argument("--rate", type=float, default=20.0, help="sales per second, whole district")
    parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: until Ctrl-C)")
    parser.add_argument("--workdir", default=str(ROOT / "var" / "demo"))
    args = parser.parse_args(argv)
    console = Console()
    workdir = Path(args.workdir)
    if workdir.exists():  # demo data is throwaway: every start provisions a new district
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    broker = Mosquitto(workdir / "broker").start()
    db = workdir / "gateway.db"
    gateway = GatewayProcess(db, broker.url, workdir / "gateway.log").start()
    creds = provision_terminals(db, [f"DEMO{i + 1:03d}" for i in range(args.terminals)])
    fleet = Fleet(workdir / "terminals", broker.url, creds)
    fleet.start()
    console.print(f"[bold]broker[/] {broker.url}   [bold]gateway db[/] {db}   [bold]logs[/] {workdir}")
    console.print("export what the gateway stored:  "
                  f".venv/bin/python -m gateway export --db {db} | head")
    started = time.monotonic()
    seller = threading.Thread(target=_sell_until, args=(fleet, args.rate, stop), daemon=True)
    seller.start()
    try:
        with Live(_view(fleet, db, started, broker.url), console=console, refresh_per_second=2) as live:
            while not stop.is_set():
                if args.duration and time.monotonic() - started >= args.duration:
                    stop.set()
                    break
                stop.wait(0.5)
                live.update(_view(fleet, db, started, broker.url))
        seller.join(timeout=5)
        fleet.wait_acked(30)
        report = reconcile(db, fleet)
        console.print(f"sent {report['sent']:,} · stored {report['stored']:,} · lost {report['lost']} · "
                      f"duplicated {report['duplicated']}")
        return 0 if report["lost"] == 0 and report["duplicated"] == 0 else 1
    finally:
        fleet.stop()
        gateway.stop()
        broker.stop()


def _sell_until(fleet: Fleet, rate: float, stop: threading.Event) -> None:
    while not stop.is_set():
        fleet.run_steady(rate, 1.0)
