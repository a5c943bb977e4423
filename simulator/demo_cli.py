"""`python -m simulator demo`: the district demo, on embedded defaults or
(--db postgresql://...) on a PostgreSQL database.

In ./var/demo (emptied first): generates Linping district from --seed
(simulator/district.py), seeds it into a fresh gateway database with the
gateway's own import functions (grid, subjects, policy, catalogue), provisions
one terminal per shop and creates a district and a town login, starts
Mosquitto on the configuration the project generates (per-terminal passwords
and ACLs, client ids bound to usernames, MQTT over TLS from a CA made for the
demo; every second shop's terminal holds a client certificate) and the
gateway, over TLS, with its supervision API and dashboard (--http, default 127.0.0.1:8080, another free
port when that one is taken), then plays a season on the virtual clock
(simulator/season_run.py: --days days of --day-seconds real seconds each, the
district's buyers at every counter, and the misuse and faults of --misuse and
--faults, so the dashboard has violations and cases to show).

One shop's counter runs as the clerk sees it: the kiosk UI (`python -m
terminal_ui`) on the PN532 and printer emulators, its URL and the clerk's PIN
printed; now and then a farmer taps a card there. At the end of the season
the ledgers are reconciled with the gateway and the scorecard printed; the
demo then keeps serving until Ctrl-C (or stops after --duration seconds).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import threading
import time
import urllib.request
from argparse import Namespace
from pathlib import Path

from rich.console import Console

from gateway.store import DB_HELP, connect, db_errors, is_postgres, sqlite_path
from gateway.store import describe as describe_db
from protocols import configsync
from simulator import misuse, scorecard
from simulator.broker import free_port
from simulator.counter_kiosk import CLERK_NAME, CounterKiosk
from simulator.fleet import Fleet
from simulator.processes import wait_for

ROOT = Path(__file__).resolve().parents[1]
SYNCED = (configsync.CATALOGUE, configsync.PARAMS, configsync.SHOP, configsync.SUBJECTS)
DEMO_FAULTS = "broker_restart,shop_offline,power_loss,clock_drift"


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


def gateway_figures(db) -> dict:
    """What the gateway holds now, read through the store's connect (a SQLite
    path or a PostgreSQL URL); a figure that cannot be read yet stays 0."""
    out = {"stored": 0, "violations": {}, "open_cases": 0, "alerts": 0}
    try:
        conn = connect(db, migrate=False)
    except (OSError, *db_errors()):
        return out
    try:
        for key, sql in (("stored", "SELECT count(*) FROM records"), ("alerts", "SELECT count(*) FROM alerts"),
                         ("open_cases", "SELECT count(*) FROM cases WHERE state != 'closed'")):
            try:
                out[key] = conn.execute(sql).fetchone()[0]
            except db_errors():
                pass
        try:
            out["violations"] = dict(conn.execute(
                "SELECT code, count(*) FROM violations GROUP BY code ORDER BY count(*) DESC").fetchall())
        except db_errors():
            pass
    finally:
        conn.close()
    return out


def demo_db(text: str | None, workdir: Path) -> str | None:
    """--db as given, or None for the embedded default (workdir/gateway.db).
    A SQLite file inside the workdir is refused: the workdir is emptied at
    every start, and the demo drops no database it was given."""
    if not text or is_postgres(text):
        return text
    path = sqlite_path(text).absolute()
    if path.is_relative_to(workdir.absolute()):
        raise ValueError(f"--db {text}: inside --workdir {workdir}, which every start empties; "
                         "leave --db out for the demo's own database, or put it elsewhere")
    return str(path)


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shops", "--terminals", dest="shops", type=int, default=20,
                        help="shops in the district, one terminal each (default 20)")
    parser.add_argument("--subjects", type=int, help="farmers and cooperatives (default 60 per shop)")
    parser.add_argument("--seed", type=int, default=1, help="the district and its buyers (default 1)")
    parser.add_argument("--days", type=int, default=30, help="simulated days (default 30)")
    parser.add_argument("--day-seconds", type=float, default=60.0, help="real seconds per simulated day (default 60)")
    parser.add_argument("--start", default="2026-04-01", help="first simulated day (default 2026-04-01, spring)")
    parser.add_argument("--misuse", default="all", help=f"injected misuse (default all): {', '.join(misuse.MISUSE)}")
    parser.add_argument("--faults", default=DEMO_FAULTS, help=f"injected faults (default {DEMO_FAULTS})")
    parser.add_argument("--duration", type=float, default=0,
                        help="stop after this many seconds of selling (0: play the season, then serve until Ctrl-C)")
    parser.add_argument("--http", default="127.0.0.1:8080",
                        help="dashboard HOST:PORT (default 127.0.0.1:8080; a free port if taken)")
    parser.add_argument("--workdir", default=str(ROOT / "var" / "demo"))
    parser.add_argument("--db", help=f"{DB_HELP}; default: a fresh SQLite file in --workdir. A database "
                        "given here must be empty (one made by createdb): the demo refuses one holding a district, "
                        "and never drops it")
    parser.add_argument("--report", help="write the final figures as JSON here")
    args = parser.parse_args(argv)
    if args.shops < 2 or args.days < 1 or args.day_seconds <= 0:
        parser.error("--shops must be at least 2, --days and --day-seconds positive")
    from simulator.season_run import SeasonRun

    console = Console()
    t0 = time.monotonic()
    workdir = Path(args.workdir)
    try:
        db = demo_db(args.db, workdir)
    except ValueError as err:
        parser.error(str(err))
    if workdir.exists():  # demo data is throwaway: every start seeds a new district
        shutil.rmtree(workdir)
    host, port = pick_http(args.http)
    url = f"http://{host}:{port}/"
    run_args = Namespace(terminals=args.shops, days=args.days, day_seconds=args.day_seconds, start=args.start,
                         misuse=args.misuse, faults=args.faults, heartbeat=None, workers=4, http=f"{host}:{port}",
                         towns=None, subjects=args.subjects, seed=args.seed, workdir=str(workdir), lead=8.0,
                         db=db)
    try:
        run_ = SeasonRun(run_args, console)
    except ValueError as err:
        parser.error(str(err))
    counter_shop = run_.district.shops[0]
    run_.kiosk_terminals = frozenset({counter_shop.terminal})
    signal.signal(signal.SIGTERM, lambda *_: run_.stop.set())
    signal.signal(signal.SIGINT, lambda *_: run_.stop.set())
    kiosk = None
    try:
        try:
            run_.start()
        except ValueError as err:   # a misuse the district is too small for, a database refused
            console.print(str(err), style="red", markup=False, highlight=False, soft_wrap=True)
            return 2
        try:
            wait_for(lambda: dashboard_up(url), 60, f"the dashboard at {url}", interval=0.1)
        except TimeoutError as err:
            console.print(f"[red]{err}[/]; see {workdir / 'gateway.log'}")
            return 1
        console.print(f"dashboard: {url}  (ready after {time.monotonic() - t0:.1f} s)", markup=False, highlight=False)
        for login in run_.seeded.logins:
            console.print(f"login: {login.name} / {login.password}  ({login.role} {login.area} {login.area_name})",
                          markup=False, highlight=False)
        kiosk = CounterKiosk(workdir / "counter", run_.district, counter_shop,
                             run_.seeded.creds[counter_shop.terminal], run_.broker.tls_url,
                             f"127.0.0.1:{free_port()}", ca=run_.broker.ca).start()
        kiosk.visitors(every_s=max(20.0, args.day_seconds / 2), seed=args.seed)
        console.print(f"counter: {kiosk.url}  ({counter_shop.name}; clerk {CLERK_NAME}, PIN {kiosk.pin})",
                      markup=False, highlight=False)
        console.print(f"broker {run_.broker.tls_url} (TLS; client certificates on {run_.broker.cert_url}; "
                      f"CA {run_.broker.ca}) · gateway db {describe_db(run_.db)} · logs and district files in {workdir}",
                      markup=False, highlight=False, soft_wrap=True)
        if args.duration:
            threading.Timer(args.duration, run_.stop.set).start()

        def describe(stored: int) -> str:
            figures = gateway_figures(run_.db)
            return (f"stored {stored:,} · violations {sum(figures['violations'].values()):,} · "
                    f"open cases {figures['open_cases']:,}")

        run_.play(describe)
        report = run_.finish()
        report.update({"dashboard": url, "counter": kiosk.url, "logins": [vars(l) for l in run_.seeded.logins],
                       "tally": report["sales"], "codes": report["refusal_codes"]})
        for table in scorecard.tables(report):
            console.print(table)
        if args.report:
            Path(args.report).write_text(json.dumps(report, ensure_ascii=False, indent=1), "utf-8")
            scorecard.write_html(report, str(Path(args.report).with_suffix(".html")))
        console.print(f"sent {report['sent']:,} · stored {report['stored']:,} · lost {report['lost']} · "
                      f"duplicated {report['duplicated']}", markup=False, highlight=False)
        if not run_.stop.is_set():
            console.print(f"the season is over; still serving {url} and {kiosk.url} — Ctrl-C to stop",
                          markup=False, highlight=False)
            run_.stop.wait()
        return 0 if report["lost"] == 0 and report["duplicated"] == 0 and report["drained"] else 1
    finally:
        if kiosk:
            kiosk.close()
        run_.close()


def wait_synced(fleet: Fleet, timeout: float, console: Console) -> None:
    """Until every terminal holds the catalogue, params, its shop and its town's
    subjects, so an offline fallback can decide from the first sale; a terminal
    still behind after `timeout` sells anyway (online decisions do not need it)."""
    def synced():
        return all(set(SYNCED) <= a.config_store.versions().keys() for a in fleet.agents)
    try:   # a thousand agents: checking costs their locks, so not too often
        wait_for(synced, timeout, "config sync", interval=min(1.0, 0.1 + len(fleet.agents) / 1000))
    except TimeoutError:
        console.print("[yellow]some terminals have not synced their config yet; selling anyway[/]")
