"""Dashboard API latency with one million stored records.

Generates the rows straight into SQLite (records, the sales index, violations,
cases with their events) in the shapes ingest and the rules write, then serves
the real API with uvicorn and measures /api/overview and /api/cases p50/p95
over real HTTP for a district user (widest scope) and a town user.

    .venv/bin/python bench/bench_dashboard.py [--records 1000000] [--requests 200] [--db PATH]

Target: p95 < 200 ms for both endpoints (issue 6).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from gateway.supervision import grid  # noqa: E402

from gateway.store import users
from gateway.api import create_app  # noqa: E402
from gateway.supervision.rules import local_parts  # noqa: E402
from gateway.store import connect  # noqa: E402
from simulator.broker import free_port, wait_port  # noqa: E402

DAY = 86_400_000
PASSWORD = "bench-password-1"
CODES = ("banned_product_sold", "sale_outside_hours", "split_purchase", "override_rate_high", "ledger_gap",
         "terminal_silent", "card_travel_impossible", "over_quota")


def build(db: Path, n: int, now: int, rng: random.Random) -> None:
    conn = connect(db)
    areas = [{"code": "D1", "level": "district", "name": "临平区"}]
    shops = []
    for t in range(10):
        areas.append({"code": f"D1T{t:02d}", "level": "town", "name": f"镇街{t}", "parent": "D1"})
        for v in range(10):
            code = f"D1T{t:02d}V{v:02d}"
            areas.append({"code": code, "level": "village", "name": f"村{t}-{v}", "parent": f"D1T{t:02d}"})
            shops.append({"id": f"SHOP{t:02d}{v:02d}", "name": f"农资店{t}-{v}", "village": code, "designated": v == 0,
                          "hours": "07:00-19:00", "lat": 30.4 + t / 100, "lon": 120.3 + v / 100})
    grid.import_grid(conn, {"areas": areas, "shops": shops})
    users.add_user(conn, "dist", "district", "D1", PASSWORD, now)
    users.add_user(conn, "town3", "town", "D1T03", PASSWORD, now)
    terminals = [(f"T{i:04d}", shops[i % 100]) for i in range(150)]
    conn.executemany("INSERT OR IGNORE INTO terminals(id, key, shop, state, last_seen, acked_upto) VALUES (?, ?, ?, 'online', ?, 0)",
                     [(t, "00" * 32, s["id"], now) for t, s in terminals])
    seqs = {t: 0 for t, _ in terminals}
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    start = now - 365 * DAY
    batch_r, batch_s = [], []
    for i in range(n):
        terminal, shop = terminals[rng.randrange(150)]
        seqs[terminal] += 1
        seq = seqs[terminal]
        t = start + int(i * 365 * DAY / n)
        rtype = "sale" if rng.random() < 0.93 else "refusal"
        subject = f"S{rng.randrange(20000):05d}"
        body = {"subject": subject, "items": [{"product": "XK13-001-00101", "packs": 1 + i % 3}], "identity": "card",
                "mode": "online", "clerk": "c1", "card": "C" + subject}
        text = json.dumps({"body": body, "mac": "0" * 64, "prev": "0" * 64, "seq": seq, "terminal": terminal,
                           "time": t, "type": rtype, "v": 1}, separators=(",", ":"))
        batch_r.append((terminal, seq, rtype, t, "%064x" % i, "0" * 64, text, t + 500, i + 1))
        day = local_parts(t, 480)[0]
        batch_s.append((terminal, seq, rtype, t, t + 500, day, shop["id"], shop["village"], shop["village"][:5],
                        "D1", subject, "C" + subject, "card", "online", 0, 40000 * (1 + i % 3) if rtype == "sale" else 0))
        if len(batch_r) == 20000:
            _flush(conn, batch_r, batch_s)
    _flush(conn, batch_r, batch_s)
    conn.execute("UPDATE terminals SET acked_upto = (SELECT max(seq) FROM records WHERE terminal = terminals.id)")
    # violations and cases: about 2% of records end in a violation, grouped into cases
    states = ("open", "assigned", "inspected", "closed", "closed", "closed")
    vid = 0
    for c in range(20000):
        shop = shops[rng.randrange(100)]
        opened = start + rng.randrange(365 * DAY)
        state = rng.choice(states)
        cur = conn.execute(
            "INSERT INTO cases(opened, updated, state, shop, subject, village, town, district, level, assignee, deadline, "
            "codes, violations, outcome, closed) VALUES (?, ?, ?, ?, ?, ?, ?, 'D1', 'village', NULL, ?, ?, 1, ?, ?)",
            [opened, opened, state, shop["id"], f"S{rng.randrange(20000):05d}", shop["village"], shop["village"][:5],
             opened + 3 * DAY, rng.choice(CODES), "confirmed" if state == "closed" else None,
             opened + DAY if state == "closed" else None])
        for _ in range(1 + c % 2):
            vid += 1
            conn.execute("INSERT INTO violations(id, time, code, dedup, subject, shop, terminal, seq, detail) "
                         "VALUES (?, ?, ?, ?, NULL, ?, NULL, NULL, '{}')", [vid, opened, rng.choice(CODES), f"b{vid}", shop["id"]])
            conn.execute("INSERT INTO case_violations(violation, case_id) VALUES (?, ?)", [vid, cur.lastrowid])
            conn.execute("INSERT INTO case_events(case_id, time, actor, action, to_state) VALUES (?, ?, 'system', 'opened', 'open')",
                         [cur.lastrowid, opened])
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def _flush(conn, batch_r, batch_s):
    conn.executemany("INSERT INTO records(terminal, seq, type, time, digest, prev, record, received, rid) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", batch_r)
    conn.executemany("INSERT INTO sales(terminal, seq, type, time, received, day, shop, village, town, district, subject, "
                     "card, identity, mode, pesticide, fertilizer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     batch_s)
    batch_r.clear()
    batch_s.clear()


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--db", help="reuse or create this database (default: a temporary one)")
    args = parser.parse_args()
    now = int(time.time() * 1000)
    db = Path(args.db) if args.db else Path(tempfile.mkdtemp(prefix="bench-dashboard-")) / "gateway.db"
    if not db.exists():
        t = time.perf_counter()
        build(db, args.records, now, random.Random(6))
        print(f"generated {args.records} records in {time.perf_counter() - t:.0f} s ({db.stat().st_size / 1e6:.0f} MB)")
    app = create_app(db, clock=lambda: int(time.time() * 1000))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_port("127.0.0.1", port, 30)
    results = {}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for user in ("dist", "town3"):
                token = client.post("/api/login", json={"name": user, "password": PASSWORD}).json()["token"]
                headers = {"Authorization": f"Bearer {token}"}
                for name, path in (("overview", "/api/overview"), ("case queue", "/api/cases?state=active"),
                                   ("case queue, filtered", "/api/cases?state=closed&code=over_quota")):
                    client.get(path, headers=headers).raise_for_status()  # warm the page cache
                    times = []
                    for _ in range(args.requests):
                        t = time.perf_counter()
                        r = client.get(path, headers=headers)
                        times.append((time.perf_counter() - t) * 1000)
                        r.raise_for_status()
                    results[(user, name)] = (pct(times, 50), pct(times, 95))
    finally:
        server.should_exit = True
        thread.join(10)
    print(f"{'user':8} {'endpoint':24} {'p50 ms':>8} {'p95 ms':>8}")
    ok = True
    for (user, name), (p50, p95) in results.items():
        print(f"{user:8} {name:24} {p50:8.1f} {p95:8.1f}")
        ok &= p95 < 200
    print("target p95 < 200 ms:", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
