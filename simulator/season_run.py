"""`python -m simulator run --days D`: a season of a generated district on the
virtual clock, with misuse and faults, judged at the end.

Order matters: the district is generated and the misuse plan made first (it
decides which terminals sit behind a netem link and which clocks drift); then
the virtual clock is set, in this process and in the environment every child
inherits, starting a little before the first morning so that setting up
(seeding, broker, gateway, config sync) happens during the night before; then
the season plays; then every link is restored and every terminal powered, the
fleet drains, and the ledgers are reconciled with the gateway and the
violations judged against the plan.

Rule thresholds that are about real time are scaled to the clock (a
terminal's heartbeat is `--heartbeat` real seconds, so the silence limit must
be several of those in virtual minutes); the rest are the gateway's defaults.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from gateway import fleet as gateway_fleet
from gateway.store import Store
from protocols import clock as _clock
from simulator import district as district_model
from simulator import judge, misuse, scorecard
from simulator.broker import Mosquitto
from simulator.demo_cli import wait_synced
from simulator.fleet import Fleet
from simulator.netem import Link
from simulator.processes import GatewayProcess
from simulator.run_cli import percentile, reconcile
from simulator.season import Season, local_ms
from simulator.seeding import counter_toml, seed

DEFAULT_START = "2026-04-06"     # a Monday in the spring rush
SETUP_LEAD_S = 20.0              # real seconds of virtual night before the first morning


def add_arguments(parser) -> None:
    g = parser.add_argument_group("season (with --days)")
    g.add_argument("--days", type=int, help="simulated days: plays a season on the virtual clock")
    g.add_argument("--start", default=DEFAULT_START, help=f"first simulated day (default {DEFAULT_START})")
    g.add_argument("--day-seconds", type=float, default=20.0, help="real seconds per simulated day (default 20)")
    g.add_argument("--misuse", default="", help=f"comma-separated, or all: {', '.join(misuse.MISUSE)}")
    g.add_argument("--faults", default="", help=f"comma-separated, or all: {', '.join(misuse.FAULTS)}")
    g.add_argument("--heartbeat", type=float, default=1.0, help="terminal status heartbeat, real seconds")
    g.add_argument("--workers", type=int, default=4, help="threads serving the counters")
    g.add_argument("--http", help="also serve the dashboard on HOST:PORT")
    g.add_argument("--html", help="write the HTML scorecard here (default: next to --report)")


def rules_toml(speed: float, heartbeat_s: float) -> str:
    """The thresholds that absorb real-time slop, scaled to the clock, never
    below their defaults: silence after twelve missed heartbeats (a broker
    restart or a busy gateway costs seconds of real time, hours on the clock);
    opening-hours grace of half a real second (a checkout that waits 200 ms for
    its authorization is stamped 20 virtual minutes after the buyer came in)."""
    silent = max(30, math.ceil(12 * heartbeat_s * speed / 60))
    grace = max(10, math.ceil(0.5 * speed / 60))
    return f"[silent]\nminutes = {silent}\n\n[hours]\ngrace_minutes = {grace}\n"


def run(args, console: Console) -> dict:
    misuse_kinds = misuse.parse_kinds(args.misuse, misuse.MISUSE, "misuse")
    fault_kinds = misuse.parse_kinds(args.faults, misuse.FAULTS, "fault")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    speed = 86_400 / args.day_seconds
    start = dt.date.fromisoformat(args.start)
    district = district_model.generate(args.seed, args.terminals)
    clock = _clock.virtual(local_ms(start, 6 * 60) - int(SETUP_LEAD_S * speed * 1000), speed)
    _clock.CLOCK = clock                      # this process: the fleet's agents
    os.environ[_clock.ENV] = clock.spec()     # the gateway and anything else started from here
    season = Season(district, clock, start, args.days, seed=args.seed, workers=args.workers)
    plan = misuse.make_plan(district, season, args.seed, misuse_kinds, fault_kinds)
    natural = season.add_natural()

    db = workdir / "gateway.db"
    seeded = seed(db, district, workdir / "district", now_ms=clock.wall_ms())
    store = Store(db)
    gateway_password = secrets.token_urlsafe(18)
    try:
        passwd, acl = gateway_fleet.write_broker_auth(store, workdir / "broker-auth", gateway_password)
    finally:
        store.close()
    broker = Mosquitto(workdir / "broker", password_file=passwd, acl_file=acl).start()
    rules = workdir / "rules.toml"
    rules.write_text(rules_toml(speed, args.heartbeat), "utf-8")
    extra = ["--rules", str(rules), "--sweep-interval", "0.5"] + (["--http", args.http] if args.http else [])
    gateway = GatewayProcess(db, broker.url, workdir / "gateway.log", username=gateway_fleet.GATEWAY_USER,
                             password=gateway_password, extra_args=extra).start()
    links = {t: Link("127.0.0.1", broker.port).start() for t in sorted(plan.links)}
    fleet = None
    stop = threading.Event()
    wall_started = time.monotonic()
    series: list[list[float]] = []
    try:
        shops = {s.terminal: s.id for s in district.shops}
        clocks = {t: (lambda d=d: clock.wall_ms() + d) for t, d in plan.drift.items()}
        fleet = Fleet(workdir / "terminals", broker.url, [seeded.creds[t] for t in shops], seed=args.seed,
                      shops=shops, extra_toml=counter_toml(district), brokers={t: l.url for t, l in links.items()},
                      clocks=clocks, heartbeat_s=args.heartbeat)
        season.attach(fleet)
        season.links, season.broker = links, broker
        fleet.start()
        console.print(f"{district.name}: {len(district.shops)} shops, {len(district.subjects):,} subjects; "
                      f"{args.days} days from {start} at {speed:,.0f}x; {natural:,} purchases planned, "
                      f"{len(plan.injections)} injections", highlight=False)
        wait_synced(fleet, 60, console)
        first_ms = clock.wall_ms()
        columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[day]}"),
                   TimeElapsedColumn())
        last_sample = [0.0]
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("season", total=season.end_ms - first_ms, day="")

            def tick(now_ms: int) -> None:
                date = dt.datetime.fromtimestamp(now_ms / 1000, dt.timezone(dt.timedelta(hours=8)))
                progress.update(task, completed=max(0, now_ms - first_ms), day=date.strftime("%m-%d %H:%M"))
                if time.monotonic() - last_sample[0] >= 1.0:
                    last_sample[0] = time.monotonic()
                    series.append([round(time.monotonic() - wall_started, 1), _stored(db)])

            season.play(stop, tick)
        for link in links.values():
            link.restore()
        for terminal in sorted(fleet.down):
            fleet.power_on(terminal)
        drained = fleet.wait_acked(120)
        settle_violations(db)
        report = reconcile(db, fleet)
        detection, injections = judge.judge(plan, judge.violations(db))
        gateway_usage = process_usage(gateway.proc.pid) if gateway.proc else {}
        report.update({
            "terminals": args.terminals, "days": args.days, "seed": args.seed, "speed": speed,
            "virtual_start_ms": local_ms(start, 0), "virtual_end_ms": season.end_ms,
            "wall_s": round(time.monotonic() - wall_started, 1), "drained": drained,
            "sales": dict(season.shoppers.snapshot()["tally"]), "skipped": dict(season.skipped),
            "refusal_codes": season.shoppers.snapshot()["codes"], "season_errors": season.errors,
            "detection": detection,
            "injections": [i for i in injections if not i["fault"]],
            "faults": [i for i in injections if i["fault"]],
            "authorization_ms": latency(season.shoppers.auth_ms),
            "throughput": {"records_per_s": _rate(series), "series": series},
            "per_day": per_day(db, start, args.days),
            "gateway": gateway_usage, "terminal_rss_mb": None,
        })
        return report
    finally:
        stop.set()
        if fleet:
            fleet.stop()
        for link in links.values():
            link.close()
        gateway.stop()
        broker.stop()
        os.environ.pop(_clock.ENV, None)


def settle_violations(db: Path, quiet_s: float = 3.0, timeout: float = 60.0) -> None:
    """Until the gateway has applied every stored record to its rules and no new
    violation appeared for `quiet_s` (sweeps run every half second)."""
    def state():
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            lag = conn.execute("SELECT coalesce(max(rid), 0) FROM records").fetchone()[0]
            try:
                done = conn.execute("SELECT min(rid) FROM followers").fetchone()[0] or 0
            except sqlite3.OperationalError:
                done = lag
            count = conn.execute("SELECT count(*) FROM violations").fetchone()[0]
        except sqlite3.OperationalError:
            return 1, 0
        finally:
            conn.close()
        return lag - done, count
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        lag, count = state()
        if lag > 0 or count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.2)


def _stored(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT coalesce(max(rid), 0) FROM records").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def _rate(series: list[list[float]]) -> float | None:
    if len(series) < 2 or series[-1][0] <= series[0][0]:
        return None
    return round((series[-1][1] - series[0][1]) / (series[-1][0] - series[0][0]), 1)


def latency(samples: list[float]) -> dict:
    if not samples:
        return {"samples": 0}
    bounds = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, None]
    hist = []
    lower = 0.0
    for b in bounds:
        n = sum(1 for x in samples if x >= lower and (b is None or x < b))
        hist.append([b, n])
        lower = b if b is not None else lower
    return {"p50": round(percentile(samples, 50), 1), "p90": round(percentile(samples, 90), 1),
            "p99": round(percentile(samples, 99), 1), "max": round(max(samples), 1), "samples": len(samples),
            "histogram": hist}


def per_day(db: Path, start: dt.date, days: int) -> list[dict]:
    """Sales, refusals and violations per local day, as the gateway stored them."""
    out = []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        for d in range(days):
            date = start + dt.timedelta(days=d)
            a, b = local_ms(date, 0), local_ms(date, 24 * 60)
            counts = dict(conn.execute("SELECT type, count(*) FROM records WHERE time >= ? AND time < ? "
                                       "GROUP BY type", [a, b]).fetchall())
            try:
                v = conn.execute("SELECT count(*) FROM violations WHERE time >= ? AND time < ?", [a, b]).fetchone()[0]
            except sqlite3.OperationalError:
                v = 0
            out.append({"date": date.isoformat(), "sales": counts.get("sale", 0),
                        "refusals": counts.get("refusal", 0), "violations": v})
    finally:
        conn.close()
    return out


def process_usage(pid: int) -> dict:
    """CPU seconds and resident memory of a process and its children (Linux /proc)."""
    pids = [pid]
    try:
        out = os.popen(f"pgrep -P {pid}").read().split()
        pids += [int(p) for p in out]
    except OSError:
        pass
    cpu = rss = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) / 1024
        except (OSError, IndexError, ValueError):
            continue
    return {"cpu_s": round(cpu, 1), "rss_mb": round(rss, 1), "processes": len(pids)}


def main(args, console: Console) -> int:
    report = run(args, console)
    for table in scorecard.tables(report):
        Console().print(table)
    if args.report:
        Path(args.report).write_text(json.dumps(report, ensure_ascii=False, indent=1), "utf-8")
    html = args.html or (str(Path(args.report).with_suffix(".html")) if args.report else None)
    if html:
        scorecard.write_html(report, html)
        console.print(f"scorecard: {html}", highlight=False)
    ok = report["lost"] == 0 and report["duplicated"] == 0 and report["drained"]
    return 0 if ok else 1
