"""What an idle terminal costs the gateway: CPU per terminal for heartbeats,
statuses and config push, when nothing is sold.

    .venv/bin/python bench/bench_idle.py [--terminals 1000] [--window 60] [--heartbeat 60] [--quick]
                                         [--db postgresql://USER@HOST:PORT/DB]

A province has tens of thousands of terminals, most of them idle most of the
time, so this cost (not the ingest rate) decides how many terminals one
gateway machine can hold open. The run:

1. the gateway with no terminal connected, for one window: its own floor
   (sweeps, followers, pollers);
2. the terminals connect: each is told the config manifest and fetches what it
   lacks (the config push), and announces itself online;
3. the same window again with every terminal connected and idle, heart-
   beating every --heartbeat seconds (60 s is what terminals ship with).

The gateway is `gateway run` as deployed: the network process, the ingest
pipeline's verifier and writer processes and the supervision process. Its CPU
is the sum of user and system time over the whole process tree, read from
/proc before and after each phase. The terminals are real agents
(simulator/fleet.py) in this process.

On SQLite the database's work is done inside the gateway's processes. With
`--db postgresql://...` (a server: the run makes a database of its own there
and drops it after) part of it moves into the server's backend processes, so
their CPU is measured too: every backend connected to the run's database,
read from /proc by the pids `pg_stat_activity` names (the server must be on
this machine), and reported beside the gateway's own.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from gateway.store import KEY_FILE_ENV, MASTER_KEY_ENV, close_pools, is_postgres  # noqa: E402
from simulator import postgres  # noqa: E402
from simulator.broker import Mosquitto  # noqa: E402
from simulator.fleet import Fleet  # noqa: E402
from simulator.processes import GatewayProcess, provision_terminals  # noqa: E402

console = Console()
TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a live process, from /proc/PID/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()   # the name may hold spaces
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by `root` and every live descendant."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat:
                stats[int(entry)] = stat
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
            todo.extend(child for child, (parent, _) in stats.items() if parent == pid)
    return total


class Backends:
    """The PostgreSQL server's processes serving one database: their CPU
    seconds so far, by pid (a backend that ends between two readings takes
    its time with it; the gateway's pool keeps its connections open)."""

    def __init__(self, server: str, dbname: str):
        import psycopg

        self.dbname = dbname
        self.conn = psycopg.connect(server, autocommit=True)
        self.own = self.conn.info.backend_pid

    def cpu(self) -> dict[int, float]:
        rows = self.conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [self.dbname]).fetchall()
        out = {}
        for (pid,) in rows:
            if pid != self.own and (stat := _stat(pid)):
                out[pid] = stat[1]
        return out

    def close(self) -> None:
        self.conn.close()


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def measure(progress, label: str, seconds: float, pid: int, backends: Backends | None) -> tuple[float, float]:
    """CPU seconds the gateway tree, and its database backends, spend over
    `seconds` of wall time."""
    task = progress.add_task(label, total=int(seconds))
    db_before = backends.cpu() if backends else {}
    before, start = tree_cpu(pid), time.monotonic()
    while (left := seconds - (time.monotonic() - start)) > 0:
        time.sleep(min(1.0, left))
        progress.update(task, completed=int(time.monotonic() - start))
    progress.update(task, completed=int(seconds))
    gateway = tree_cpu(pid) - before
    return gateway, spent(db_before, backends.cpu()) if backends else 0.0


def wait_configured(fleet: Fleet, progress, timeout: float) -> int:
    """Until every agent has been told the gateway's config manifest and holds
    every section it announced; returns how many did within `timeout`."""
    task = progress.add_task("terminals connecting and fetching config", total=len(fleet.agents))

    def configured(agent) -> bool:
        latest = agent.sync.latest
        have = agent.config_store.versions()
        return bool(latest) and all(have.get(name, -1) >= version for name, version in latest.items())

    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done = sum(configured(a) for a in fleet.agents)
        progress.update(task, completed=done)
        if done == len(fleet.agents):
            break
        time.sleep(0.5)
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--terminals", type=int, default=1000)
    parser.add_argument("--window", type=float, default=60.0, help="seconds each idle phase is measured")
    parser.add_argument("--heartbeat", type=float, default=60.0, help="the terminals' uplink.heartbeat_s")
    parser.add_argument("--quick", action="store_true", help="100 terminals, 15 s windows, 5 s heartbeats")
    parser.add_argument("--db", help="a PostgreSQL server on this machine, postgresql://USER@HOST:PORT/DB: the run "
                                     "makes a database of its own there (default: SQLite in a temporary directory)")
    args = parser.parse_args()
    if args.quick:
        args.terminals, args.window, args.heartbeat = 100, 15.0, 5.0
    if args.db and not is_postgres(args.db):
        parser.error(f"--db {args.db!r}: a PostgreSQL server, postgresql://USER@HOST:PORT/DB")

    work = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    backends = None
    if args.db:
        dbname = f"bench_idle_{os.getpid()}"
        db = postgres.create_database(args.db, dbname)
        if not (os.environ.get(MASTER_KEY_ENV) or os.environ.get(KEY_FILE_ENV)):
            os.environ[MASTER_KEY_ENV] = secrets.token_hex(32)  # the gateway inherits it
        backends = Backends(args.db, dbname)
    else:
        db = work / "gateway.db"
    results: dict = {"terminals": args.terminals, "window_s": args.window, "heartbeat_s": args.heartbeat,
                     "db": "postgresql" if args.db else "sqlite"}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    broker = gateway = fleet = None
    try:
        creds = provision_terminals(db, [f"I{i:05d}" for i in range(args.terminals)])
        broker = Mosquitto(work / "broker").start()
        gateway = GatewayProcess(db, broker.url, work / "gateway.log").start()
        gateway.wait_subscribed()
        with Progress(*columns, console=console) as progress:
            time.sleep(2.0)   # the gateway's start-up is not idle time
            results["floor_cpu_s"], results["floor_db_cpu_s"] = measure(progress, "gateway alone", args.window,
                                                                        gateway.proc.pid, backends)
            fleet = Fleet(work / "fleet", broker.url, creds, heartbeat_s=args.heartbeat)
            db_before = backends.cpu() if backends else {}
            before, start = tree_cpu(gateway.proc.pid), time.monotonic()
            fleet.start()
            results["configured"] = wait_configured(fleet, progress, timeout=max(120.0, args.terminals * 0.2))
            results["connect_s"] = time.monotonic() - start
            results["connect_cpu_s"] = tree_cpu(gateway.proc.pid) - before
            results["connect_db_cpu_s"] = spent(db_before, backends.cpu()) if backends else 0.0
            time.sleep(2.0)
            results["idle_cpu_s"], results["idle_db_cpu_s"] = measure(
                progress, f"{args.terminals} terminals idle", args.window, gateway.proc.pid, backends)
    finally:
        if fleet:
            fleet.stop()
        if gateway:
            gateway.stop()
        if broker:
            broker.kill()
        if backends:
            backends.close()
            close_pools()
            postgres.drop_database(args.db, dbname)
        shutil.rmtree(work, ignore_errors=True)

    def per_terminal_minute(idle: float, floor: float) -> float:
        return max(0.0, idle - floor) / args.terminals * 1000 * 60 / args.window

    results["cpu_ms_per_terminal_minute"] = per_terminal_minute(results["idle_cpu_s"], results["floor_cpu_s"])
    results["db_cpu_ms_per_terminal_minute"] = per_terminal_minute(results["idle_db_cpu_s"],
                                                                   results["floor_db_cpu_s"])
    per_terminal = (results["cpu_ms_per_terminal_minute"] + results["db_cpu_ms_per_terminal_minute"]) / 1000 / 60
    results["core_share_per_1000"] = per_terminal * 1000
    results["connect_cpu_ms_per_terminal"] = results["connect_cpu_s"] * 1000 / args.terminals
    results["connect_db_cpu_ms_per_terminal"] = results["connect_db_cpu_s"] * 1000 / args.terminals
    table = Table(title=f"the gateway's CPU for idle terminals ({args.terminals} terminals, heartbeat "
                        f"{args.heartbeat:g} s, {args.window:g} s windows, {results['db']})")
    table.add_column("measure")
    table.add_column("gateway", justify="right")
    if backends:
        table.add_column("its PostgreSQL backends", justify="right")

    def row(label: str, *values: str) -> None:
        table.add_row(label, *(values if backends else values[:1]))

    def share(cpu_s: float) -> str:
        return f"{cpu_s / args.window * 100:.1f} % of a core"

    row("alone (its floor)", share(results["floor_cpu_s"]), share(results["floor_db_cpu_s"]))
    row("with every terminal idle", share(results["idle_cpu_s"]), share(results["idle_db_cpu_s"]))
    row("per idle terminal, above the floor", f"{results['cpu_ms_per_terminal_minute']:.2f} ms CPU a minute",
        f"{results['db_cpu_ms_per_terminal_minute']:.2f} ms CPU a minute")
    row("1,000 idle terminals" + (" (both together)" if backends else ""), f"{results['core_share_per_1000'] * 100:.1f} % of a core", "")
    row(f"connect + config push ({results['configured']} of {args.terminals} configured, "
        f"{results['connect_s']:.0f} s)", f"{results['connect_cpu_ms_per_terminal']:.1f} ms CPU a terminal",
        f"{results['connect_db_cpu_ms_per_terminal']:.1f} ms CPU a terminal")
    Console(width=max(console.width, 110)).print(table)   # three columns: too wide for 80
    console.print_json(json.dumps(results))
    return 0 if results["configured"] == args.terminals else 1


if __name__ == "__main__":
    sys.exit(main())
