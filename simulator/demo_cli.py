"""`python -m simulator demo`: the district demo on embedded defaults.

In ./var/demo (emptied first): generates Linping district from --seed
(simulator/district.py), seeds it into a fresh gateway database with the
gateway's own import functions (grid, subjects, policy, catalogue), provisions
one terminal per shop and creates a district and a town login, starts
Mosquitto with per-terminal passwords and ACLs, the gateway with the
supervision API and dashboard (--http, default 127.0.0.1:8080, another free
port when that one is taken), and one real terminal agent per shop in this
process. Buyers then tap their signed cards and have their packs scanned at
the counters (`agent.counter`), following the district's purchase pattern,
with a live view until Ctrl-C (or --duration seconds); at the end every
terminal ledger is reconciled with what the gateway stored.

The demo plays on the wall clock (a night-time demo sells outside opening
hours); `python -m simulator run --days D` plays a season on the virtual clock
with misuse, faults and the scorecard (simulator/season_run.py).
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from gateway import fleet as gateway_fleet
from gateway.store import Store
from protocols import configsync
from simulator import district as district_model
from simulator.broker import Mosquitto
from simulator.fleet import Fleet
from simulator.processes import GatewayProcess, ROOT as PROJECT_ROOT, _env, wait_for
from simulator.run_cli import percentile, reconcile
from simulator.seeding import counter_toml, seed
from simulator.shoppers import Shoppers

ROOT = Path(__file__).resolve().parents[1]
SYNCED = (configsync.CATALOGUE, configsync.PARAMS, configsync.SHOP, configsync.SUBJECTS)


class HttpGateway(GatewayProcess):
    """`gateway run` with `--http`: GatewayProcess has no way to pass extra
    arguments yet (simulator/processes.py is shared with the fault drills)."""

    def __init__(self, *args, http: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.http = http

    def start(self) -> "HttpGateway":
        env = _env()
        env["GATEWAY_MQTT_PASSWORD"] = self.password or ""
        cmd = [sys.executable, "-m", "gateway", "run", "--broker", self.broker_url, "--db", str(self.db),
               "--username", self.username, "--http", self.http]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=self._log, cwd=PROJECT_ROOT)
        return self


def pick_http(text: str) -> tuple[str, int]:
    """HOST:PORT as asked when it is free, else a free port on the same host, so
    a second demo (or anything on 8080) does not stop this one from starting."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        with socket.socket() as s:
            s.bind((host, int(port)))
        return host, int(port)
    except OSError:
        with socket.socket() as s:
            s.bind((host, 0))
            return host, s.getsockname()[1]


def dashboard_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def gateway_figures(db: Path) -> dict:
    """What the gateway holds now, read-only: the supervision tables appear when
    its supervision child has started, so each query is allowed to find nothing."""
    out = {"stored": 0, "violations": {}, "open_cases": 0, "alerts": 0}
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return out
    try:
        for key, sql in (("stored", "SELECT count(*) FROM records"), ("alerts", "SELECT count(*) FROM alerts"),
                         ("open_cases", "SELECT count(*) FROM cases WHERE state != 'closed'")):
            try:
                out[key] = conn.execute(sql).fetchone()[0]
            except sqlite3.Error:
                pass
        try:
            out["violations"] = dict(conn.execute(
                "SELECT code, count(*) FROM violations GROUP BY code ORDER BY count(*) DESC").fetchall())
        except sqlite3.Error:
            pass
    finally:
        conn.close()
    return out


def _view(shoppers: Shoppers, fleet: Fleet, db: Path, started: float, title: str) -> Group:
    figures = gateway_figures(db)
    snap = shoppers.snapshot()
    tally = snap["tally"]
    table = Table(title=title)
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("shops / terminals", str(len(fleet.agents)))
    table.add_row("sales approved (of which partial)",
                  f"{tally.get('approve', 0) + tally.get('partial', 0):,} ({tally.get('partial', 0):,})")
    table.add_row("refused at the counter", f"{tally.get('refuse', 0):,}")
    table.add_row("decided online / offline", f"{tally.get('online', 0):,} / {tally.get('offline', 0):,}")
    if tally.get("errors"):
        table.add_row("counter errors", f"{tally['errors']:,}")
    table.add_row("records stored at the gateway", f"{figures['stored']:,}")
    table.add_row("waiting to upload", f"{fleet.backlog():,}")
    lat = fleet.latencies_ms[-2000:]
    if lat:
        table.add_row("commit → gateway ack p50 / p99", f"{percentile(lat, 50):.0f} / {percentile(lat, 99):.0f} ms")
    table.add_row("violations", f"{sum(figures['violations'].values()):,}")
    table.add_row("open cases", f"{figures['open_cases']:,}")
    table.add_row("ingest alerts", str(figures["alerts"]))
    table.add_row("simulated day (pattern)", shoppers.day.isoformat())
    table.add_row("running for", f"{time.monotonic() - started:,.0f} s")
    detail = Table(title="refusal reasons · violations", show_header=False)
    detail.add_column("")
    detail.add_column("", justify="right")
    for code, n in list(snap["codes"].items())[:6]:
        detail.add_row(f"[yellow]{code}[/]", f"{n:,}")
    for code, n in list(figures["violations"].items())[:6]:
        detail.add_row(f"[red]{code}[/]", f"{n:,}")
    return Group(table, detail)


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shops", "--terminals", dest="shops", type=int, default=20,
                        help="shops in the district, one terminal each (default 20)")
    parser.add_argument("--subjects", type=int, help="farmers and cooperatives (default 60 per shop)")
    parser.add_argument("--seed", type=int, default=1, help="the district and its buyers (default 1)")
    parser.add_argument("--rate", type=float, default=3.0, help="customers per second, whole district (default 3)")
    parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: until Ctrl-C)")
    parser.add_argument("--http", default="127.0.0.1:8080",
                        help="dashboard HOST:PORT (default 127.0.0.1:8080; a free port if taken)")
    parser.add_argument("--workdir", default=str(ROOT / "var" / "demo"))
    parser.add_argument("--report", help="write the final figures as JSON here")
    args = parser.parse_args(argv)
    if args.shops < 1 or args.rate <= 0:
        parser.error("--shops and --rate must be positive")
    console = Console()
    t0 = time.monotonic()
    workdir = Path(args.workdir)
    if workdir.exists():  # demo data is throwaway: every start seeds a new district
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    district = district_model.generate(args.seed, args.shops, args.subjects)
    db = workdir / "gateway.db"
    seeded = seed(db, district, workdir / "district")
    gateway_password = secrets.token_urlsafe(18)
    store = Store(db)
    try:
        passwd, acl = gateway_fleet.write_broker_auth(store, workdir / "broker-auth", gateway_password)
    finally:
        store.close()
    broker = Mosquitto(workdir / "broker", password_file=passwd, acl_file=acl).start()
    host, port = pick_http(args.http)
    url = f"http://{host}:{port}/"
    gateway = HttpGateway(db, broker.url, workdir / "gateway.log", username=gateway_fleet.GATEWAY_USER,
                          password=gateway_password, http=f"{host}:{port}").start()
    fleet = shoppers = seller = None
    try:
        shops = {s.terminal: s.id for s in district.shops}
        fleet = Fleet(workdir / "terminals", broker.url, [seeded.creds[t] for t in shops], seed=args.seed,
                      shops=shops, extra_toml=counter_toml(district))
        fleet.start()
        console.print(f"[bold]{district.name}[/] ({district.code}): {len(district.towns)} towns, "
                      f"{len(district.villages)} villages, {len(district.shops)} shops "
                      f"({sum(s.designated for s in district.shops)} designated), "
                      f"{len(district.subjects):,} subjects · seed {args.seed}")
        try:
            wait_for(lambda: dashboard_up(url), 60, f"the dashboard at {url}", interval=0.1)
        except TimeoutError as err:
            console.print(f"[red]{err}[/]; see {workdir / 'gateway.log'}")
            return 1
        console.print(f"dashboard: {url}  (ready after {time.monotonic() - t0:.1f} s)", markup=False, highlight=False)
        for login in seeded.logins:
            console.print(f"login: {login.name} / {login.password}  ({login.role} {login.area} {login.area_name})",
                          markup=False, highlight=False)
        console.print(f"broker {broker.url} · gateway db {db} · logs and district files in {workdir}",
                      markup=False, highlight=False)
        wait_synced(fleet, 20, console)
        shoppers = Shoppers(district, fleet, seed=args.seed)
        started = time.monotonic()
        seller = threading.Thread(target=shoppers.run, args=(args.rate, stop), name="shoppers", daemon=True)
        seller.start()
        title = f"{district.name} demo · dashboard {url}"
        with Live(_view(shoppers, fleet, db, started, title), console=console, refresh_per_second=2) as live:
            while not stop.is_set():
                if args.duration and time.monotonic() - started >= args.duration:
                    stop.set()
                    break
                stop.wait(0.5)
                live.update(_view(shoppers, fleet, db, started, title))
        seller.join(timeout=10)
        if not console.is_terminal:
            console.print()  # Live leaves its last frame without a line end when piped
        drained = fleet.wait_acked(30)
        report = reconcile(db, fleet)
        report.update({"drained": drained, "dashboard": url, "logins": [vars(l) for l in seeded.logins],
                       **shoppers.snapshot(), **{k: v for k, v in gateway_figures(db).items() if k != "stored"}})
        if args.report:
            Path(args.report).write_text(json.dumps(report, ensure_ascii=False, indent=1))
        console.print(f"sent {report['sent']:,} · stored {report['stored']:,} · lost {report['lost']} · "
                      f"duplicated {report['duplicated']}", markup=False, highlight=False)
        return 0 if report["lost"] == 0 and report["duplicated"] == 0 and drained else 1
    finally:
        stop.set()
        if fleet:
            fleet.stop()
        gateway.stop()
        broker.stop()


def wait_synced(fleet: Fleet, timeout: float, console: Console) -> None:
    """Until every terminal holds the catalogue, params, its shop and its town's
    subjects, so an offline fallback can decide from the first sale; a terminal
    still behind after `timeout` sells anyway (online decisions do not need it)."""
    def synced():
        return all(all(s in a.config_store.versions() for s in SYNCED) for a in fleet.agents)
    try:
        wait_for(synced, timeout, "config sync", interval=0.1)
    except TimeoutError:
        console.print("[yellow]some terminals have not synced their config yet; selling anyway[/]")
