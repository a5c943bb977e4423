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
By default the heartbeat is chosen so that the silence limit is a simulated
day, shorter than the two-day outages the faults inject, whatever the speed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import secrets
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from gateway.enforcement import fleet as gateway_fleet
from gateway.enforcement import pki as gateway_pki
from gateway.store import KEY_FILE_ENV, MASTER_KEY_ENV, Store, connect, db_errors, is_postgres, private_file
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
from simulator.seeding import check_empty, counter_toml, seed

DEFAULT_START = "2026-04-06"     # a Monday in the spring rush
SETUP_LEAD_S = 20.0              # real seconds of virtual night before the first morning (default)


def add_arguments(parser) -> None:
    g = parser.add_argument_group("season (with --days)")
    g.add_argument("--days", type=int, help="simulated days: plays a season on the virtual clock")
    g.add_argument("--start", default=DEFAULT_START, help=f"first simulated day (default {DEFAULT_START})")
    g.add_argument("--day-seconds", type=float, default=20.0, help="real seconds per simulated day (default 20)")
    g.add_argument("--misuse", default="", help=f"comma-separated, or all: {', '.join(misuse.MISUSE)}")
    g.add_argument("--faults", default="", help=f"comma-separated, or all: {', '.join(misuse.FAULTS)}")
    g.add_argument("--heartbeat", type=float, help="terminal status heartbeat, real seconds "
                   "(default: a twelfth of a simulated day, between 0.5 and 60)")
    g.add_argument("--workers", type=int, default=4, help="threads serving the counters")
    g.add_argument("--http", help="also serve the dashboard on HOST:PORT")
    g.add_argument("--towns", type=int, help="that many generated towns instead of the district's real ones")
    g.add_argument("--subjects", type=int, help="subjects in the district (default 60 per shop)")
    g.add_argument("--html", help="write the HTML scorecard here (default: next to --report)")


SILENT_HEARTBEATS = 12            # missed heartbeats before a terminal counts as silent


def default_heartbeat(speed: float) -> float:
    """Real seconds between heartbeats that put the silence limit at one
    simulated day (1.25 s at a day in 15 s; 5 s at a day a minute)."""
    return min(60.0, max(0.5, 86_400 / speed / SILENT_HEARTBEATS))


def rules_toml(speed: float, heartbeat_s: float) -> str:
    """The thresholds that absorb real-time slop, scaled to the clock, never
    below their defaults: silence after twelve missed heartbeats (a broker
    restart or a busy gateway costs seconds of real time, hours on the clock);
    opening-hours grace of two real seconds (a checkout that waits 200 ms for
    its authorization is stamped 5 to 20 virtual minutes after the buyer came
    in, a busy second more), but at most an hour, so that the injected sale
    an hour and a half after closing is still out of hours."""
    silent = max(30, math.ceil(SILENT_HEARTBEATS * heartbeat_s * speed / 60))
    grace = max(10, min(60, math.ceil(2.0 * speed / 60)))
    return f"[silent]\nminutes = {silent}\n\n[hours]\ngrace_minutes = {grace}\n"


class SeasonRun:
    """The phases of a run, for `run` below and for the demo (which adds a
    kiosk and keeps serving after the season): start, play, finish, close."""

    def __init__(self, args, console: Console, kiosk_terminals: frozenset = frozenset()):
        """`kiosk_terminals` run outside the fleet (the demo's kiosk process):
        no agent here, and the season's buyers skip their shops."""
        self.args, self.console = args, console
        self.kiosk_terminals = kiosk_terminals
        self.misuse_kinds = misuse.parse_kinds(args.misuse, misuse.MISUSE, "misuse")
        self.fault_kinds = misuse.parse_kinds(args.faults, misuse.FAULTS, "fault")
        if (self.misuse_kinds or self.fault_kinds) and args.days < 7:
            raise ValueError("misuse and faults are spread over a week: --days must be at least 7")
        self.workdir = Path(args.workdir)
        self.speed = 86_400 / args.day_seconds
        self.heartbeat = getattr(args, "heartbeat", None) or default_heartbeat(self.speed)
        self.start_date = dt.date.fromisoformat(args.start)
        towns = district_model.synthetic_towns(args.towns) if args.towns else district_model.LINPING_TOWNS
        self.district = district_model.generate(args.seed, args.terminals, args.subjects, towns=towns)
        # the embedded default: a SQLite file in the workdir, made afresh; or the
        # database --db names (postgresql://...), which must be empty (check_empty)
        self.db = getattr(args, "db", None) or self.workdir / "gateway.db"
        self._key_env_set = False
        self.broker = self.gateway = self.fleet = None
        self.links: dict[str, Link] = {}
        self.series: list[list[float]] = []
        self.stop = threading.Event()
        self.seeded = None

    def start(self) -> "SeasonRun":
        args, console = self.args, self.console
        self.workdir.mkdir(parents=True, exist_ok=True)
        check_empty(self.db)   # before anything is written: a database it cannot use is refused untouched
        self._master_key()
        raise_open_files()
        speed = self.speed
        # setting up takes longer with more terminals (agents, config sync); the
        # clock must not reach the first morning before the counters are ready
        lead = getattr(args, "lead", None) or SETUP_LEAD_S + 0.25 * args.terminals
        clock = self.clock = _clock.virtual(local_ms(self.start_date, 6 * 60) - int(lead * speed * 1000), speed)
        _clock.CLOCK = clock                      # this process: the fleet's agents
        os.environ[_clock.ENV] = clock.spec()     # the gateway and anything else started from here
        season = self.season = Season(self.district, clock, self.start_date, args.days, seed=args.seed,
                                      workers=args.workers)
        season.closed_shops = {s.id for s in self.district.shops if s.terminal in self.kiosk_terminals}
        self.plan = misuse.make_plan(self.district, season, args.seed, self.misuse_kinds, self.fault_kinds)
        natural = season.add_natural()
        self.seeded = seed(self.db, self.district, self.workdir / "district", now_ms=clock.wall_ms())
        # the broker as deployed: its generated configuration, MQTT over TLS from a
        # CA made for this run; every second shop's terminal holds a client certificate
        self.pki = gateway_pki.Pki(self.workdir / "pki")
        self.pki.init()
        store = Store(self.db)
        self.gateway_password = secrets.token_urlsafe(18)
        try:
            self.broker = Mosquitto.generated(self.workdir / "broker", store, self.gateway_password,
                                              pki_dir=self.pki.dir)
        finally:
            store.close()
        self.broker.start()
        rules = self.workdir / "rules.toml"
        rules.write_text(rules_toml(speed, self.heartbeat), "utf-8")
        extra = ["--rules", str(rules), "--sweep-interval", "0.5"] + (["--http", args.http] if args.http else [])
        if is_postgres(self.db):   # inspection photos go next to a SQLite file; a server database has none
            extra += ["--photos", str(self.workdir / "photos")]
        self.gateway = GatewayProcess(self.db, self.broker.tls_url, self.workdir / "gateway.log",
                                      username=gateway_fleet.GATEWAY_USER, password=self.gateway_password,
                                      extra_args=extra, ca=self.broker.ca).start()
        shops = {s.terminal: s.id for s in self.district.shops if s.terminal not in self.kiosk_terminals}
        certs = {t: self.pki.issue(t) for t in sorted(shops)[1::2]}

        def port(terminal: str) -> int:
            return self.broker.cert_port if terminal in certs else self.broker.tls_port

        self.links = {t: Link("127.0.0.1", port(t), scheme="mqtts").start() for t in sorted(self.plan.links)}
        self.wall_started = time.monotonic()
        clocks = {t: (lambda d=d: clock.wall_ms() + d) for t, d in self.plan.drift.items()}
        brokers = {t: self.broker.cert_url for t in certs} | {t: link.url for t, link in self.links.items()}
        self.fleet = Fleet(self.workdir / "terminals", self.broker.tls_url, [self.seeded.creds[t] for t in shops],
                           seed=args.seed, shops=shops, extra_toml=counter_toml(self.district),
                           brokers=brokers, clocks=clocks, heartbeat_s=self.heartbeat, ca=self.broker.ca,
                           certs={t: (issued.cert, issued.key) for t, issued in certs.items()})
        season.attach(self.fleet)
        season.links, season.broker = self.links, self.broker
        self.fleet.start()
        console.print(f"{self.district.name}: {len(self.district.shops)} shops, {len(self.district.subjects):,} "
                      f"subjects; {args.days} days from {self.start_date} at {speed:,.0f}x; {natural:,} purchases "
                      f"planned, {len(self.plan.injections)} injections", highlight=False)
        wait_synced(self.fleet, 30 + 0.15 * args.terminals, console)
        first_morning = local_ms(self.start_date, 6 * 60)
        if clock.wall_ms() > first_morning:
            console.print(f"[yellow]setting up took longer than the {lead:.0f} s allowed: the season starts "
                          f"{(clock.wall_ms() - first_morning) / 3_600_000:.1f} simulated hours late[/]")
        return self

    def _master_key(self) -> None:
        """A database on a server has no directory for the automatic key file
        (gateway/store/keys.py), so a PostgreSQL run makes a demo master key
        in the workdir, 0600, and names it in the environment the seeding (this
        process) and the gateway (a child) read; a key the operator set wins."""
        if not is_postgres(self.db) or os.environ.get(KEY_FILE_ENV) or os.environ.get(MASTER_KEY_ENV):
            return
        path = self.workdir / "gateway-master.key"
        private_file(path)
        path.write_text(secrets.token_hex(32) + "\n", "ascii")
        os.environ[KEY_FILE_ENV] = str(path.absolute())
        self._key_env_set = True

    def play(self, describe=None) -> None:
        """The season, with a progress bar in virtual time; `describe()` adds a
        line of figures to it once a second."""
        season, clock = self.season, self.clock
        first_ms = clock.wall_ms()
        columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[day]}"),
                   TimeElapsedColumn(), TextColumn("{task.fields[status]}"))
        last_sample = [0.0]
        with Progress(*columns, console=self.console) as progress:
            task = progress.add_task("season", total=season.end_ms - first_ms, day="", status="")

            def tick(now_ms: int) -> None:
                date = dt.datetime.fromtimestamp(now_ms / 1000, dt.timezone(dt.timedelta(hours=8)))
                progress.update(task, completed=max(0, now_ms - first_ms), day=date.strftime("%m-%d %H:%M"))
                if time.monotonic() - last_sample[0] >= 1.0:
                    last_sample[0] = time.monotonic()
                    stored = _stored(self.db)
                    self.series.append([round(time.monotonic() - self.wall_started, 1), stored])
                    if describe is not None:
                        progress.update(task, status=describe(stored))

            season.play(self.stop, tick)

    def finish(self) -> dict:
        """Every link back, every terminal powered, drained, reconciled, judged."""
        args, season, fleet = self.args, self.season, self.fleet
        for link in self.links.values():
            link.restore()
        for terminal in sorted(fleet.down):
            fleet.power_on(terminal)
        drained = fleet.wait_acked(120)
        settle_violations(self.db)
        report = reconcile(self.db, fleet)
        detection, injections = judge.judge(self.plan, raised_violations(self.db))
        snapshot = season.shoppers.snapshot()
        report.update({
            "terminals": args.terminals, "days": args.days, "seed": args.seed, "speed": self.speed,
            "heartbeat_s": round(self.heartbeat, 2),
            "virtual_start_ms": local_ms(self.start_date, 0), "virtual_end_ms": season.end_ms,
            "wall_s": round(time.monotonic() - self.wall_started, 1), "drained": drained,
            "sales": dict(snapshot["tally"]), "skipped": dict(season.skipped),
            "refusal_codes": snapshot["codes"], "season_errors": season.errors,
            "detection": detection,
            "injections": [i for i in injections if not i["fault"]],
            "faults": [i for i in injections if i["fault"]],
            "authorization_ms": latency(season.shoppers.auth_ms),
            "throughput": {"records_per_s": _rate(self.series), "series": self.series},
            "per_day": per_day(self.db, self.start_date, args.days),
            "gateway": process_usage(self.gateway.proc.pid) if self.gateway.proc else {},
            "fleet_rss_mb": own_rss_mb(),
        })
        return report

    def close(self) -> None:
        self.stop.set()
        if self.fleet:
            self.fleet.stop()
        for link in self.links.values():
            link.close()
        if self.gateway:
            self.gateway.stop()
        if self.broker:
            self.broker.stop()
        os.environ.pop(_clock.ENV, None)
        if self._key_env_set:
            os.environ.pop(KEY_FILE_ENV, None)


def run(args, console: Console) -> dict:
    run_ = SeasonRun(args, console)
    try:
        run_.start()
        run_.play()
        return run_.finish()
    finally:
        run_.close()


def raise_open_files() -> None:
    """Each agent holds a socket and a few SQLite files, and Mosquitto (started
    from here) a socket per agent: a thousand terminals need more than the
    usual 1,024 descriptors."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))


def settle_violations(db, quiet_s: float = 3.0, timeout: float = 60.0) -> None:
    """Until the gateway has applied every stored record to its rules and no new
    violation appeared for `quiet_s` (sweeps run every half second)."""
    def state():
        def read(conn):
            lag = conn.execute("SELECT coalesce(max(rid), 0) FROM records").fetchone()[0]
            done = conn.execute("SELECT min(rid) FROM followers").fetchone()[0]
            count = conn.execute("SELECT count(*) FROM violations").fetchone()[0]
            return lag - (done or 0), count
        return _read(db, read, (1, 0))
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        lag, count = state()
        if lag > 0 or count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.2)


def _read(db, read, default):
    """`read(conn)` on the gateway's database (a path or a URL, through the
    store's connect), or `default` when it cannot be read yet: the season
    only watches, and a busy or restarting database is no reason to stop."""
    try:
        conn = connect(db, migrate=False)
    except (OSError, *db_errors()):
        return default
    try:
        return read(conn)
    except db_errors():
        return default
    finally:
        conn.close()


def _stored(db) -> int:
    return _read(db, lambda conn: conn.execute("SELECT coalesce(max(rid), 0) FROM records").fetchone()[0], 0)


def raised_violations(db) -> list[dict]:
    """The gateway's violations, as simulator/judge.py matches them."""
    keys = ("id", "code", "subject", "shop", "terminal", "seq", "time")
    return _read(db, lambda conn: [dict(zip(keys, r)) for r in conn.execute(
        "SELECT id, code, subject, shop, terminal, seq, time FROM violations ORDER BY id").fetchall()], [])


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


def per_day(db, start: dt.date, days: int) -> list[dict]:
    """Sales, refusals and violations per local day, as the gateway stored them."""
    def read(conn):
        out = []
        for d in range(days):
            date = start + dt.timedelta(days=d)
            a, b = local_ms(date, 0), local_ms(date, 24 * 60)
            counts = dict(conn.execute("SELECT type, count(*) FROM records WHERE time >= ? AND time < ? "
                                       "GROUP BY type", [a, b]).fetchall())
            v = conn.execute("SELECT count(*) FROM violations WHERE time >= ? AND time < ?", [a, b]).fetchone()[0]
            out.append({"date": date.isoformat(), "sales": counts.get("sale", 0),
                        "refusals": counts.get("refusal", 0), "violations": v})
        return out
    return _read(db, read, [])


def process_usage(pid: int) -> dict:
    """CPU seconds and resident memory of a process and its children (Linux /proc)."""
    pids = [pid]
    try:
        out = os.popen(f"pgrep -P {pid}").read().split()
        pids += [int(p) for p in out]
    except OSError:
        pass
    cpu = rss = peak = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    peak += int(line.split()[1]) / 1024
        except (OSError, IndexError, ValueError):
            continue
    return {"cpu_s": round(cpu, 1), "rss_mb": round(rss, 1), "peak_rss_mb": round(peak, 1), "processes": len(pids)}


def own_rss_mb() -> float:
    """Resident memory of this process alone: the fleet of in-process agents."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


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
