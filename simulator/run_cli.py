"""`python -m simulator run`: drive N real terminal agents against a real broker
and gateway, then report what was sent, stored, lost and duplicated.

Without --broker it starts its own Mosquitto and gateway process in the work
directory; with --broker and --db it uses a running gateway whose database is
--db (terminals are registered there).

With --days it plays a season of a generated district instead, on the virtual
clock, with --misuse and --faults, and ends with the scorecard
(simulator/season_run.py). Without it, it is the plain fleet driver the tests
and benchmarks use: --rate sales a second for --duration seconds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from firmware.ledger import export_lines
from gateway.store import Store
from simulator.broker import Mosquitto
from simulator.fleet import Fleet
from simulator.processes import GatewayProcess, provision_terminals


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def reconcile(db: Path, fleet: Fleet) -> dict:
    """Compare every ledger with what the gateway stored."""
    store = Store(db)
    try:
        sent = stored = lost = duplicated = altered = 0
        for agent in fleet.agents:
            ledger = list(export_lines(agent.ledger.path))
            gateway = list(store.export(agent.terminal))
            sent += len(ledger)
            stored += len(gateway)
            gateway_set = set(gateway)
            lost += sum(1 for text in ledger if text not in gateway_set)
            duplicated += len(gateway) - len(gateway_set)
            altered += len(gateway_set - set(ledger))
        return {"sent": sent, "stored": stored, "lost": lost, "duplicated": duplicated, "altered": altered,
                "alerts": len(store.alerts()), "quarantined": len(store.quarantined())}
    finally:
        store.close()


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--terminals", type=int, default=10)
    parser.add_argument("--mcu", type=int, default=0,
                        help="also this many card-only MicroPython terminals (docs/mcu.md), real processes")
    parser.add_argument("--rate", type=float, default=50.0, help="sales per second, whole fleet")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of selling")
    parser.add_argument("--broker", help="mqtt://HOST:PORT of a running broker (default: start one)")
    parser.add_argument("--db", help="the running gateway's database (with --broker)")
    parser.add_argument("--workdir", help="where ledgers and logs go (default: a temporary directory)")
    parser.add_argument("--report", help="write the JSON report here")
    parser.add_argument("--seed", type=int, default=1)
    from simulator import season_run   # it builds on this module's reconcile
    season_run.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.days is not None:
        if args.broker or args.db:
            parser.error("--days runs its own broker and gateway; --broker/--db are for the plain driver")
        if args.days < 1 or args.terminals < 2:
            parser.error("--days needs at least one day and two terminals")
        args.workdir = args.workdir or tempfile.mkdtemp(prefix="season-")
        try:
            return season_run.main(args, Console(stderr=True))
        except ValueError as err:
            parser.error(str(err))
    if bool(args.broker) != bool(args.db):
        parser.error("--broker and --db go together")
    console = Console(stderr=True)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="simulator-"))
    workdir.mkdir(parents=True, exist_ok=True)
    broker = gateway = None
    try:
        if args.broker:
            broker_url, db = args.broker, Path(args.db)
        else:
            broker = Mosquitto(workdir / "broker").start()
            broker_url, db = broker.url, workdir / "gateway.db"
        names = [f"SIM{i + 1:04d}" for i in range(args.terminals)]
        creds = provision_terminals(db, names)
        mcu = None
        if args.mcu:
            from simulator.mcu_fleet import McuFleet
            mcu_creds = provision_terminals(db, [f"MCU{i + 1:04d}" for i in range(args.mcu)])
            mcu = McuFleet(workdir / "mcu", broker_url, db, mcu_creds, seed=args.seed)
        if broker:
            gateway = GatewayProcess(db, broker_url, workdir / "gateway.log").start()
        fleet = Fleet(workdir / "terminals", broker_url, creds, seed=args.seed)
        fleet.start()
        if mcu:
            mcu.start()
        total = int(args.rate * args.duration)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            selling = progress.add_task("selling", total=total)
            if mcu:
                mcu_selling = _sell_mcu(mcu, args.mcu * MCU_RATE, args.duration)
            fleet.run_steady(args.rate, args.duration, lambda n: progress.advance(selling, n))
            if mcu:
                mcu_selling.join()
                mcu.wait_results(120)
            backlog = fleet.backlog() + (mcu.backlog() if mcu else 0)
            draining = progress.add_task("uploading", total=max(backlog, 1))
            drained = fleet.wait_acked(120, lambda left: progress.update(draining, completed=backlog - left))
            if mcu:
                drained = drained and _wait(lambda: mcu.backlog() == 0, 120)
        fleet.stop()
        report = reconcile(db, fleet)
        if mcu:
            mcu.stop()
            report = _merge_mcu(report, db, mcu)
        report.update({
            "terminals": args.terminals, "rate": args.rate, "duration_s": args.duration,
            "drained": drained,
            "latency_ms": {"p50": percentile(fleet.latencies_ms, 50), "p99": percentile(fleet.latencies_ms, 99),
                           "max": max(fleet.latencies_ms, default=None), "samples": len(fleet.latencies_ms)},
        })
        table = Table(title="simulator run")
        for key in ("terminals", "mcu_terminals", "sent", "stored", "lost", "duplicated", "alerts", "quarantined"):
            if key in report:
                table.add_row(key, str(report[key]))
        lat = report["latency_ms"]
        if lat["p50"] is not None:
            table.add_row("commit→ack p50 / p99 ms", f"{lat['p50']:.1f} / {lat['p99']:.1f}")
        Console().print(table)
        if args.report:
            Path(args.report).write_text(json.dumps(report, indent=2))
        return 0 if report["lost"] == 0 and report["duplicated"] == 0 and drained else 1
    finally:
        if gateway:
            gateway.stop()
        if broker:
            broker.kill()


MCU_RATE = 2.0   # sales a second per MicroPython terminal: a tap, a decision and the buzzer take ~0.2 s


def _sell_mcu(mcu, rate: float, duration: float):
    """Sales at the MicroPython terminals, round-robin, beside the Pi agents'."""
    import threading
    import time

    def run():
        start, n = time.monotonic(), 0
        while time.monotonic() - start < duration:
            due = start + n / rate
            if due > time.monotonic():
                time.sleep(due - time.monotonic())
            mcu.sell(n % len(mcu.terminals))
            n += 1
    thread = threading.Thread(target=run, name="mcu-sales", daemon=True)
    thread.start()
    return thread


def _wait(predicate, timeout: float) -> bool:
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _merge_mcu(report: dict, db: Path, mcu) -> dict:
    """The MicroPython terminals' ledgers reconciled like the Pi agents', added in."""
    from simulator.mcu_fleet import reconcile as reconcile_mcu
    store = Store(db)
    try:
        extra = reconcile_mcu(store, mcu)
    finally:
        store.close()
    for key in ("sent", "stored", "lost", "duplicated", "altered"):
        report[key] += extra[key]
    report["mcu"] = dict(extra, terminals=len(mcu.terminals), approved=mcu.approved())
    report["mcu_terminals"] = len(mcu.terminals)
    return report
