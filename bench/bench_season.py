"""A thousand terminals for a simulated month, one command:

    .venv/bin/python bench/bench_season.py [--terminals 1000] [--days 30] [--day-seconds 120]
        [--start 2026-12-01] [--towns 100] [--subjects-per-shop 20] [--json PATH]
        [--db postgresql://USER@HOST:PORT/DB]

The season runner of `python -m simulator run --days` (simulator/season_run.py)
with every misuse and fault kind, at district scale: real terminal agents in
this process (each with its own MQTT connection, ledger and synced config),
a real Mosquitto and the real gateway processes. It reports what the issue
asks for:
- sustained records/s stored at the gateway over the season;
- authorization round trip p50/p99 (terminal -> broker -> gateway -> back);
- gateway CPU (seconds, and as a share of one core over the run) and resident
  memory of its process tree at the end;
- memory of one terminal agent: the resident size of a real agent process
  (`python -m simulator sell`: the agent of `python -m firmware run` with the
  synthetic counter), measured on its own after the season, and the fleet
  process's resident size divided by the number of agents in it;
- lost / duplicated records, detection recall, and natural purchases skipped
  because a counter fell behind the clock (`late`), the sign of a machine
  that cannot keep up with the chosen speed.

A thousand shops in Linping's eight streets would be 125 shops a street;
`--towns` spreads them over generated towns of about ten shops, as real towns
have, which also keeps each terminal's synced registry at a town's size.

The gateway stores on SQLite in the run's directory, or with `--db` on a
PostgreSQL server: the run makes a database of its own there and drops it
after (kept with `--keep`). Its CPU and memory figures are the gateway's
processes; a server's backends are not in them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from gateway.store import close_pools, is_postgres  # noqa: E402
from simulator import postgres, season_run  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def one_agent_rss(workdir: Path) -> float | None:
    """Resident size of a real terminal agent process, selling, on its own
    broker: the figure for a Raspberry Pi's budget."""
    from simulator.broker import Mosquitto
    from simulator.processes import provision_terminals, terminal_config_text

    broker = Mosquitto(workdir / "rss-broker").start()
    try:
        creds = provision_terminals(workdir / "rss-gateway.db", ["RSS1"])[0]
        config = workdir / "rss-terminal.toml"
        config.write_text(terminal_config_text(creds, broker.url, workdir / "rss-ledger.db"),
                          "utf-8")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("AGRI_CLOCK", None)
        proc = subprocess.Popen([sys.executable, "-m", "simulator", "sell", "--config", str(config), "--rate", "5"], cwd=ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(8)
            return round(rss_mb(proc.pid), 1) if proc.poll() is None else None
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    finally:
        broker.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--terminals", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--day-seconds", type=float, default=120.0,
                        help="real seconds a simulated day (at a thousand terminals this 2-core machine "
                             "still skipped a quarter of December's purchases as late at 100)")
    parser.add_argument("--start", default="2026-12-01", help="a quiet month by default (December x0.3)")
    parser.add_argument("--towns", type=int, default=100)
    parser.add_argument("--subjects-per-shop", type=int, default=20)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--heartbeat", type=float,
                        help="terminal status heartbeat, real seconds (default: the season runner's, "
                             "a twelfth of a simulated day)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write the figures here as JSON")
    parser.add_argument("--keep", help="keep the run's files in this directory (and the --db database)")
    parser.add_argument("--db", help="a PostgreSQL server, postgresql://USER@HOST:PORT/DB, to make the run's "
                                     "database on (default: SQLite in the run's directory)")
    opts = parser.parse_args()
    if opts.db and not is_postgres(opts.db):
        parser.error(f"--db {opts.db!r}: a PostgreSQL server, postgresql://USER@HOST:PORT/DB")
    console = Console(stderr=True)
    sys.setswitchinterval(0.02)   # two thousand agent threads: fewer GIL hand-overs
    workdir = Path(opts.keep or tempfile.mkdtemp(prefix="bench-season-"))
    args = argparse.Namespace(
        terminals=opts.terminals, days=opts.days, day_seconds=opts.day_seconds, start=opts.start,
        misuse="all", faults="all", heartbeat=opts.heartbeat, workers=opts.workers, http=None, html=None,
        towns=opts.towns, subjects=opts.subjects_per_shop * opts.terminals, seed=opts.seed,
        workdir=str(workdir / "run"), report=None)
    dbname = f"bench_season_{os.getpid()}"
    if opts.db:
        args.db = postgres.create_database(opts.db, dbname)
    started = time.monotonic()
    try:
        report = season_run.run(args, console)
    finally:
        if opts.db and not opts.keep:
            close_pools()
            postgres.drop_database(opts.db, dbname)
    wall = time.monotonic() - started
    fleet_rss = report.get("fleet_rss_mb")
    figures = {
        "terminals": opts.terminals, "db": "postgresql" if opts.db else "sqlite", "days": opts.days, "speed": report["speed"], "wall_s": round(wall, 1),
        "sent": report["sent"], "stored": report["stored"], "lost": report["lost"],
        "duplicated": report["duplicated"], "drained": report["drained"],
        "records_per_s": report["throughput"]["records_per_s"],
        "authorization_ms": {k: report["authorization_ms"].get(k) for k in ("p50", "p90", "p99", "max", "samples")},
        "gateway": report["gateway"],
        "gateway_cpu_share": round(report["gateway"].get("cpu_s", 0) / report["wall_s"], 2) if report["wall_s"] else None,
        "fleet_rss_mb": fleet_rss,
        "fleet_rss_per_agent_mb": round(fleet_rss / opts.terminals, 2) if fleet_rss else None,
        "one_agent_process_rss_mb": one_agent_rss(workdir),
        "skipped": report["skipped"], "sales": report["sales"],
        "recall": {k: v["recall"] for k, v in report["detection"].items()},
        "false_alarms": {k: v["false_alarms"] for k, v in report["detection"].items() if v["false_alarms"]},
    }
    table = Table(title=f"{opts.terminals} terminals, {opts.days} simulated days, {figures['db']}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in ("wall_s", "sent", "stored", "lost", "duplicated", "drained", "records_per_s", "gateway_cpu_share",
                "fleet_rss_per_agent_mb", "one_agent_process_rss_mb"):
        table.add_row(key, str(figures[key]))
    a = figures["authorization_ms"]
    table.add_row("authorization p50 / p99 ms", f"{a['p50']} / {a['p99']} (n={a['samples']})")
    g = figures["gateway"]
    table.add_row("gateway CPU s / RSS MB", f"{g.get('cpu_s')} / {g.get('rss_mb')} ({g.get('processes')} processes)")
    table.add_row("skipped natural purchases", json.dumps(figures["skipped"]))
    Console().print(table)
    if opts.json:
        Path(opts.json).write_text(json.dumps(figures, ensure_ascii=False, indent=1), "utf-8")
    return 0 if figures["lost"] == 0 and figures["duplicated"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
