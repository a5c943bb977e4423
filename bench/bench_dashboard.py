"""Dashboard API latency over a year of records: one million on SQLite, ten
million on PostgreSQL.

    .venv/bin/python bench/bench_dashboard.py [--records 1000000] [--requests 200]
        [--db PATH | --db postgresql://USER@HOST:PORT/DBNAME] [--keep] [--reuse]

Generates the rows (records, the sales index, violations, cases with their
events) in the shapes ingest and the rules write, then serves the real API
with uvicorn and measures /api/overview and /api/cases p50/p95 over real HTTP
for a district user (widest scope) and a town user.

The data: a year of records from 150 terminals in 100 shops (ten towns of ten
villages), about 7 % refusals, 20,000 subjects; a case per 50 records, with
one or two violations each, half of the cases not yet closed. The tables come
from the store's own migrations (`gateway.store.connect`), never from DDL
written here.

`--db`: without it, a SQLite file in a temporary directory (removed after
the run unless `--keep`); a path: that SQLite file, generated if missing and
measured as it is if it exists; `postgresql://USER@HOST:PORT/DBNAME`: a
server, on which the bench makes a database of its own (DBNAME is only where
it connects to make it) and drops it after the run unless `--keep`, which
prints its URL; `--reuse` with that URL measures the kept database again
without generating.

PostgreSQL is loaded with COPY, a stream per table on a connection of its own
held open across batches, so the server's backends parse and index while
this process makes the next rows (two cores: ten million records in minutes,
not the hour executemany would take). The load ends with VACUUM ANALYZE:
autovacuum would do the same after a bulk insert, and until it has, the
visibility map is empty and no index-only scan is possible, so the figures
would be of a database no gateway runs for long. SQLite ends with ANALYZE.

Target: p95 < 200 ms for both endpoints, on SQLite with 1 million records
(issue 6) and on PostgreSQL with 10 million (issue 16).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from gateway.api import create_app  # noqa: E402
from gateway.store import close_pools, connect, describe, is_postgres, transaction, users  # noqa: E402
from gateway.supervision import grid  # noqa: E402
from gateway.supervision.rules import local_parts  # noqa: E402
from simulator import postgres  # noqa: E402
from simulator.broker import free_port, wait_port  # noqa: E402
from simulator.run_cli import percentile  # noqa: E402

console = Console()

DAY = 86_400_000
TZ_MINUTES = 480
PASSWORD = "bench-password-1"
TERMINALS, SUBJECTS = 150, 20_000
RECORDS_PER_CASE = 50
BATCH = 20_000
CODES = ("banned_product_sold", "sale_outside_hours", "split_purchase", "override_rate_high", "ledger_gap",
         "terminal_silent", "card_travel_impossible", "over_quota")
CASE_STATES = ("open", "assigned", "inspected", "closed", "closed", "closed")
ENDPOINTS = (("overview", "/api/overview"), ("case queue", "/api/cases?state=active"),
             ("case queue, filtered", "/api/cases?state=closed&code=over_quota"))
USERS = ("dist", "town3")

COLUMNS = {
    "records": ("terminal", "seq", "type", "time", "digest", "prev", "record", "received"),
    "sales": ("terminal", "seq", "type", "time", "received", "day", "shop", "village", "town", "district", "subject",
              "card", "identity", "mode", "pesticide", "fertilizer"),
    "cases": ("id", "opened", "updated", "state", "shop", "subject", "village", "town", "district", "level",
              "assignee", "deadline", "codes", "violations", "outcome", "closed"),
    "violations": ("id", "time", "code", "dedup", "subject", "shop", "terminal", "seq", "detail"),
    "case_violations": ("violation", "case_id"),
    "case_events": ("case_id", "time", "actor", "action", "to_state"),
}
# rows given their ids here (the link tables name them): PostgreSQL's identity
# sequences are moved past them after the load, as migration 4 does for rid
EXPLICIT_IDS = ("cases", "violations")

# a stored record as ingest keeps it: canonical JSON (sorted keys, no spaces),
# written out here because json.dumps would be most of the generation time
RECORD = ('{"body":{"subject":"%s","items":[{"product":"XK13-001-00101","packs":%d}],"identity":"card",'
          '"mode":"online","clerk":"c1","card":"C%s"},"mac":"' + "0" * 64 + '","prev":"' + "0" * 64 +
          '","seq":%d,"terminal":"%s","time":%d,"type":"%s","v":1}')


# ---------------------------------------------------------------- where the rows go

class SqliteSink:
    """executemany in one transaction, synchronous off: a bench database is
    made again, never recovered."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute("BEGIN")
        return self

    def put(self, table: str, rows: list) -> None:
        columns = COLUMNS[table]
        self.conn.executemany(f"INSERT INTO {table}({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
                              rows)

    def __exit__(self, *exc) -> None:
        self.conn.execute("ROLLBACK" if exc[0] else "COMMIT")


class PostgresSink:
    """A COPY stream per table, each on its own connection and kept open
    across batches: one transaction per table, committed at the end."""

    def __init__(self, url: str):
        self.url = url
        self.stack = contextlib.ExitStack()
        self.copies: dict = {}

    def __enter__(self):
        return self

    def put(self, table: str, rows: list) -> None:
        import psycopg

        copy = self.copies.get(table)
        if copy is None:
            conn = self.stack.enter_context(psycopg.connect(self.url))
            cur = self.stack.enter_context(conn.cursor())
            copy = self.stack.enter_context(cur.copy(f"COPY {table} ({', '.join(COLUMNS[table])}) FROM STDIN"))
            self.copies[table] = copy
        for row in rows:
            copy.write_row(row)

    def __exit__(self, *exc):
        return self.stack.__exit__(*exc)


# ---------------------------------------------------------------- the district and its year

def grid_data() -> tuple[list, list]:
    areas = [{"code": "D1", "level": "district", "name": "临平区"}]
    shops = []
    for t in range(10):
        areas.append({"code": f"D1T{t:02d}", "level": "town", "name": f"镇街{t}", "parent": "D1"})
        for v in range(10):
            code = f"D1T{t:02d}V{v:02d}"
            areas.append({"code": code, "level": "village", "name": f"村{t}-{v}", "parent": f"D1T{t:02d}"})
            shops.append({"id": f"SHOP{t:02d}{v:02d}", "name": f"农资店{t}-{v}", "village": code, "designated": v == 0,
                          "hours": "07:00-19:00", "lat": 30.4 + t / 100, "lon": 120.3 + v / 100})
    return areas, shops


def records_and_sales(n: int, now: int, terminals: list, seqs: dict, rng: random.Random):
    """Batches of (records rows, sales rows): `n` records evenly over the year
    up to `now`, each from a random terminal in its own sequence."""
    start = now - 365 * DAY
    days: dict[int, str] = {}
    batch_r, batch_s = [], []
    for i in range(n):
        terminal, shop = terminals[rng.randrange(TERMINALS)]
        seqs[terminal] += 1
        seq = seqs[terminal]
        t = start + int(i * 365 * DAY / n)
        rtype = "sale" if rng.random() < 0.93 else "refusal"
        subject = f"S{rng.randrange(SUBJECTS):05d}"
        packs = 1 + i % 3
        local_day = (t + TZ_MINUTES * 60_000) // DAY
        day = days.get(local_day)
        if day is None:
            day = days[local_day] = local_parts(t, TZ_MINUTES)[0]
        batch_r.append((terminal, seq, rtype, t, "%064x" % i, "0" * 64,
                        RECORD % (subject, packs, subject, seq, terminal, t, rtype), t + 500))
        batch_s.append((terminal, seq, rtype, t, t + 500, day, shop["id"], shop["village"], shop["village"][:5],
                        "D1", subject, "C" + subject, "card", "online", 0, 40000 * packs if rtype == "sale" else 0))
        if len(batch_r) == BATCH:
            yield batch_r, batch_s
            batch_r, batch_s = [], []
    if batch_r:
        yield batch_r, batch_s


def cases_and_violations(n_cases: int, now: int, shops: list, rng: random.Random):
    """Batches of {table: rows}: cases opened over the year in random shops,
    each with one or two violations and its 'opened' event."""
    start = now - 365 * DAY
    vid = 0
    out = {table: [] for table in ("cases", "violations", "case_violations", "case_events")}
    for c in range(1, n_cases + 1):
        shop = shops[rng.randrange(len(shops))]
        opened = start + rng.randrange(365 * DAY)
        state = rng.choice(CASE_STATES)
        found = 1 + c % 2
        out["cases"].append((c, opened, opened, state, shop["id"], f"S{rng.randrange(SUBJECTS):05d}", shop["village"],
                             shop["village"][:5], "D1", "village", None, opened + 3 * DAY, rng.choice(CODES), found,
                             "confirmed" if state == "closed" else None, opened + DAY if state == "closed" else None))
        out["case_events"].append((c, opened, "system", "opened", "open"))
        for _ in range(found):
            vid += 1
            out["violations"].append((vid, opened, rng.choice(CODES), f"b{vid}", None, shop["id"], None, None, "{}"))
            out["case_violations"].append((vid, c))
        if len(out["cases"]) == BATCH:
            yield out
            out = {table: [] for table in out}
    if out["cases"]:
        yield out


def build(db: str, n: int, now: int, rng: random.Random, progress: Progress) -> None:
    pg = is_postgres(db)
    conn = connect(db)
    try:
        areas, shops = grid_data()
        grid.import_grid(conn, {"areas": areas, "shops": shops})
        users.add_user(conn, "dist", "district", "D1", PASSWORD, now)
        users.add_user(conn, "town3", "town", "D1T03", PASSWORD, now)
        terminals = [(f"T{i:04d}", shops[i % len(shops)]) for i in range(TERMINALS)]
        seqs = {t: 0 for t, _ in terminals}
        n_cases = max(1, n // RECORDS_PER_CASE)
        task = progress.add_task("records and sales", total=n)
        with (PostgresSink(db) if pg else SqliteSink(conn)) as sink:
            for batch_r, batch_s in records_and_sales(n, now, terminals, seqs, rng):
                sink.put("records", batch_r)
                sink.put("sales", batch_s)
                progress.advance(task, len(batch_r))
            task = progress.add_task("cases and violations", total=n_cases)
            for batch in cases_and_violations(n_cases, now, shops, rng):
                for table, rows in batch.items():
                    sink.put(table, rows)
                progress.advance(task, len(batch["cases"]))
            progress.update(task, description="cases and violations (committing)")
        with transaction(conn):
            for t, shop in terminals:
                conn.execute("INSERT INTO terminals(id, key, shop, state, last_seen, acked_upto) "
                             "VALUES (?, ?, ?, 'online', ?, ?)",
                             [t, "00" * 32, shop["id"], now, seqs[t]])
            if pg:
                for table in EXPLICIT_IDS:
                    conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}")
        task = progress.add_task("VACUUM ANALYZE" if pg else "ANALYZE", total=None)
        conn.execute("VACUUM ANALYZE" if pg else "ANALYZE")
        progress.update(task, total=1, completed=1)
    finally:
        conn.close()


def size_mb(db: str) -> float:
    if not is_postgres(db):
        return Path(db).stat().st_size / 1e6
    conn = connect(db)
    try:
        return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 1e6
    finally:
        conn.close()


# ---------------------------------------------------------------- the measurement

def measure(db: str, photos: Path, requests: int, progress: Progress) -> dict:
    app = create_app(db, clock=lambda: int(time.time() * 1000), photos_dir=photos)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    results = {}
    try:
        wait_port("127.0.0.1", port, 30)
        task = progress.add_task("requests", total=len(USERS) * len(ENDPOINTS) * requests)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for user in USERS:
                token = client.post("/api/login", json={"name": user, "password": PASSWORD}).json()["token"]
                headers = {"Authorization": f"Bearer {token}"}
                for name, path in ENDPOINTS:
                    progress.update(task, description=f"requests: {user} {name}")
                    client.get(path, headers=headers).raise_for_status()  # warm the caches
                    times = []
                    for _ in range(requests):
                        t = time.perf_counter()
                        r = client.get(path, headers=headers)
                        times.append((time.perf_counter() - t) * 1000)
                        r.raise_for_status()
                        progress.advance(task)
                    results[(user, name)] = (percentile(times, 50), percentile(times, 95))
    finally:
        server.should_exit = True
        thread.join(10)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--db", help="a SQLite file (generated if missing), or a PostgreSQL server "
                                     "postgresql://USER@HOST:PORT/DBNAME to make a database of its own on "
                                     "(default: a SQLite file in a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the database the bench made (prints where)")
    parser.add_argument("--reuse", action="store_true",
                        help="--db postgresql://... names a database kept with --keep: measure it as it is")
    args = parser.parse_args()
    if args.reuse and not (args.db and is_postgres(args.db)):
        parser.error("--reuse needs --db postgresql://USER@HOST:PORT/DBNAME naming a database kept with --keep")

    now = int(time.time() * 1000)
    work = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    made = None
    if args.db and is_postgres(args.db):
        if args.reuse:
            db = args.db
        else:
            name = f"bench_dashboard_{os.getpid()}"
            db = made = postgres.create_database(args.db, name)
    else:
        db = args.db or str(work / "gateway.db")
    generate = not args.reuse and (is_postgres(db) or not Path(db).exists())
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    built_s = None
    try:
        with Progress(*columns, console=console) as progress:
            if generate:
                t = time.perf_counter()
                build(db, args.records, now, random.Random(6), progress)
                built_s = time.perf_counter() - t
            results = measure(db, work / "photos", args.requests, progress)
        if built_s is not None:
            console.print(f"generated {args.records:,} records in {built_s:.0f} s ({size_mb(db):,.0f} MB)")
    finally:
        close_pools()
        if made and not args.keep:
            postgres.drop_database(args.db, made.rsplit("/", 1)[1])
        if args.keep or args.db:
            shutil.rmtree(work / "photos", ignore_errors=True)
            if not any(work.iterdir()):
                work.rmdir()
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.keep and (made or not args.db):
        console.print(f"kept {describe(db)}" + (" (measure it again: --reuse --db that URL)" if made else ""))

    table = Table(title=f"dashboard API on {'PostgreSQL' if is_postgres(db) else 'SQLite'}, "
                        f"{args.requests} requests each")
    for column in ("user", "endpoint", "p50 ms", "p95 ms"):
        table.add_column(column, justify="right" if column.endswith("ms") else "left")
    ok = True
    for (user, name), (p50, p95) in results.items():
        table.add_row(user, name, f"{p50:.1f}", f"{p95:.1f}")
        ok &= p95 < 200
    console.print(table)
    console.print("target p95 < 200 ms:", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
