"""The desk's search and quota chart over a province-sized registry.

Generates a registry of subjects (default one million: a province's farmers)
and the grid straight into SQLite, then asks the real API in-process for a
farmer by a common name fragment, a rare full name, a card number and an ID
number, as a district user and as a village user, and for the quota chart
(`/api/stats/quota`) the first time after an import and again.

Side by side in the same run: the registry read whole into Python and
scanned there, which is what the search did before it looked names, cards
and ID numbers up in the database's index (subject_keys).

    .venv/bin/python bench/bench_search.py [--subjects 1000000] [--requests 20] [--db PATH]

Target: every search p95 under 200 ms at one million subjects.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient  # noqa: E402
from rich.progress import Progress  # noqa: E402

from gateway.api import create_app  # noqa: E402
from gateway.store import connect, registry as registry_store, users  # noqa: E402
from gateway.supervision import grid  # noqa: E402

PASSWORD = "bench-password-1"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国"


def build(db: Path, n: int, rng: random.Random) -> dict:
    """The registry and grid; returns what the searches look for."""
    conn = connect(db)
    areas = [{"code": "D1", "level": "district", "name": "临平区"}]
    shops = []
    for t in range(20):
        areas.append({"code": f"D1T{t:02d}", "level": "town", "name": f"镇街{t}", "parent": "D1"})
        for v in range(50):
            code = f"D1T{t:02d}V{v:02d}"
            areas.append({"code": code, "level": "village", "name": f"村{t}-{v}", "parent": f"D1T{t:02d}"})
            if v < 5:
                shops.append({"id": f"SHOP{t:02d}{v:02d}", "name": f"农资店{t}-{v}", "village": code,
                              "designated": v == 0, "hours": "07:00-19:00"})
    grid.import_grid(conn, {"areas": areas, "shops": shops})
    users.add_user(conn, "dist", "district", "D1", PASSWORD, 0)
    users.add_user(conn, "vill", "village", "D1T03V07", PASSWORD, 0)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    batch = []
    rare = None
    with Progress() as progress:
        task = progress.add_task("registry", total=n)
        for i in range(n):
            t, v = rng.randrange(20), rng.randrange(50)
            name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randrange(1, 3)))
            entry = {"id": f"S{i:07d}", "name": name, "town": f"D1T{t:02d}", "village": f"D1T{t:02d}V{v:02d}",
                     "status": "active", "id_number": f"330113{19500101 + i % 500000:08d}{i % 10000:04d}"[:18],
                     "cards": [f"C{i:07d}"], "crops": [{"crop": "rice", "mu": 1 + i % 20}]}
            if i == n // 2:
                entry["name"] = rare = "欧阳雪梅"
            batch.append(entry)
            if len(batch) == 5_000:
                registry_store.put_subjects(conn, batch, 1, 0)     # as an import stores them, search keys too
                progress.advance(task, len(batch))
                batch.clear()
        registry_store.put_subjects(conn, batch, 1, 0)
        progress.advance(task, len(batch))
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    middle = n // 2
    return {"common": "张", "rare": rare, "card": f"C{middle + 1:07d}",
            "id_number": f"330113{19500101 + (middle + 1) % 500000:08d}{(middle + 1) % 10000:04d}"[:18]}


def python_scan(db: Path, text: str) -> int:
    """The registry read whole and scanned in Python (the search before)."""
    conn = connect(db)
    try:
        found = 0
        for _sid, _town, data in conn.execute("SELECT id, town, data FROM subjects").fetchall():
            entry = json.loads(data)
            if text in (entry.get("name") or ""):
                found += 1
                if found >= 20:
                    break
        return found
    finally:
        conn.close()


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def timed(fn, times: int) -> tuple[float, float]:
    spent = []
    for _ in range(times):
        t = time.perf_counter()
        fn()
        spent.append((time.perf_counter() - t) * 1000)
    return pct(spent, 50), pct(spent, 95)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--db", help="reuse or create this database (default: a temporary one)")
    args = parser.parse_args()
    db = Path(args.db) if args.db else Path(tempfile.mkdtemp(prefix="bench-search-")) / "gateway.db"
    wanted_file = db.with_suffix(".wanted.json")
    if not db.exists():
        t = time.perf_counter()
        wanted = build(db, args.subjects, random.Random(18))
        wanted_file.write_text(json.dumps(wanted, ensure_ascii=False))
        print(f"generated {args.subjects} subjects in {time.perf_counter() - t:.0f} s "
              f"({db.stat().st_size / 1e6:.0f} MB)")
    wanted = json.loads(wanted_file.read_text())
    app = create_app(db, clock=lambda: int(time.time() * 1000))
    rows = []
    ok = True
    with TestClient(app) as client:
        for user in ("dist", "vill"):
            token = client.post("/api/login", json={"name": user, "password": PASSWORD}).json()["token"]
            client.cookies.clear()
            headers = {"Authorization": f"Bearer {token}"}
            for what in ("common", "rare", "card", "id_number"):
                def ask():
                    r = client.get("/api/search", params={"q": wanted[what]}, headers=headers)
                    r.raise_for_status()
                    return r.json()["subjects"]
                found = len(ask())
                p50, p95 = timed(ask, args.requests)
                rows.append((user, f"search {what}", found, p50, p95))
                ok &= p95 < 200
            if user == "dist":
                t = time.perf_counter()
                client.get("/api/stats/quota", headers=headers).raise_for_status()
                first = (time.perf_counter() - t) * 1000
                p50, p95 = timed(lambda: client.get("/api/stats/quota", headers=headers).raise_for_status(),
                                 args.requests)
                rows.append((user, "quota chart, first", None, first, first))
                rows.append((user, "quota chart, again", None, p50, p95))
    baseline = timed(lambda: python_scan(db, wanted["rare"]), 3)
    print(f"{'user':6} {'request':22} {'found':>6} {'p50 ms':>9} {'p95 ms':>9}")
    for user, name, found, p50, p95 in rows:
        print(f"{user:6} {name:22} {'' if found is None else found:>6} {p50:9.1f} {p95:9.1f}")
    print(f"{'':6} {'whole registry scan':22} {'':>6} {baseline[0]:9.1f} {baseline[1]:9.1f}   (the search before)")
    rare = next(r for r in rows if r[:2] == ("dist", "search rare"))
    print(f"rare name, district: {baseline[0] / rare[3]:.0f}x faster than the scan in Python (p50)")
    print("target search p95 < 200 ms:", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
