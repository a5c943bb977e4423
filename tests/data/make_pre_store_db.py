"""Makes `tests/data/gateway-pre-store.sqlite`: a gateway database as the code
before the store had one owner made it (commit ffbeeef, every module creating
its own tables), for tests/test_store_migration.py.

Run it against that commit's tree, with that tree's own commands:

    git worktree add /tmp/old16 ffbeeef
    (cd /tmp/old16 && umask 077 && ../../work/main/.venv/bin/python \\
        /work/main/tests/data/make_pre_store_db.py /work/main/tests/data/gateway-pre-store.sqlite)

(any checkout path works: the script runs `python -m gateway` in the current
directory and imports the gateway from there). The master key is fixed
(MASTER_KEY below), so the test can open the sealed terminal keys.

What it holds: the supervision grid of tests/support/supervision.py imported
with `gateway grid import`, terminals TA..TD added with `gateway terminal
add`, a district and a town user with `gateway users add`, the policy params,
three subjects, a registry key, a revoked card and an enrolled face through
`gateway policy|subjects|subjects keys|revoke|faces`; then signed records
(sales, one of a banned product, a void, a refusal, a gap) through the old
ingest, with the old followers (quota ledger, rules, upstream feed) and one
supervision sweep, so records, quota, sales, violations, alerts, missing
ranges, cases, outbox and sweep state all have rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

MASTER_KEY = "11" * 32
PASSWORD = "pre-store-password"
T0 = 1748746800000  # 2025-06-01 11:00 China Standard Time: within every shop's hours


def gateway(*args: str) -> None:
    env = dict(os.environ, GATEWAY_MASTER_KEY=MASTER_KEY, PW=PASSWORD)
    subprocess.run([sys.executable, "-m", "gateway", *args], check=True, env=env, stdout=subprocess.DEVNULL)


def grid_toml(grid: dict) -> str:
    out = []
    for kind in ("areas", "shops"):
        for row in grid[kind]:
            out.append(f"[[{kind}]]")
            out += [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in row.items()]
    return "\n".join(out) + "\n"


def make(db: Path) -> None:
    sys.path.insert(0, os.getcwd())
    os.environ["GATEWAY_MASTER_KEY"] = MASTER_KEY
    from gateway import quota, upstream
    from gateway.follow import Follower
    from gateway.ingest import Ingest
    from gateway.rules import config
    from gateway.rules.engine import RecordHook
    from gateway.store import Store
    from gateway.supervision import Supervision
    from protocols import authz
    from tests.support import quota_fixtures as fx
    from tests.support.supervision import DISTRICT, GRID, KEY, TERMINAL_SHOPS, TOWN1, Chain, sale_body

    work = db.parent / (db.name + ".work")
    work.mkdir()
    (work / "grid.toml").write_text(grid_toml(GRID), "utf-8")
    for terminal, shop in TERMINAL_SHOPS.items():
        gateway("terminal", "--db", str(db), "add", terminal, "--shop", shop, "--key", KEY.hex())
    gateway("grid", "--db", str(db), "import", str(work / "grid.toml"))
    gateway("users", "--db", str(db), "add", "--role", "district", "--area", DISTRICT, "--password-env", "PW", "d1")
    gateway("users", "--db", str(db), "add", "--role", "town", "--area", TOWN1, "--password-env", "PW", "t1")
    (work / "params.json").write_text(json.dumps(fx.params()), "utf-8")
    gateway("policy", "import", str(work / "params.json"), "--db", str(db))
    subjects = fx.subjects({"S00001": 10, "S00002": 8, "S00003": 5}, TOWN1)
    gateway("subjects", "import", str(fx.write_jsonl(work / "subjects.jsonl", subjects)), "--db", str(db))
    gateway("subjects", "keys", "--db", str(db), "add", fx.registry_public_hex())
    gateway("revoke", "CARD-LOST", "--db", str(db))
    face = {"subject": "S00001", "model": "dlib_face_recognition_resnet_model_v1/5pt", "encodings": [[0.1] * 128]}
    (work / "faces.jsonl").write_text(json.dumps(face) + "\n", "utf-8")
    gateway("faces", "import", str(work / "faces.jsonl"), "--db", str(db))

    store = Store(db)
    clock = lambda: T0 + 3_600_000  # noqa: E731
    ingest = Ingest(store, lambda *a: None, verifiers=0, wall_ms=clock)
    cfg = config.load()
    followers = [Follower(db, "quota", quota.RecordApplier(quota.ConfigCache()), clock),
                 Follower(db, "supervision", RecordHook(cfg), clock),
                 Follower(db, "upstream", upstream.RecordFeed(), clock)]
    ingest.start()
    try:
        a, b = Chain("TA"), Chain("TB")
        card = authz.card_proof(*fx.issue_card("S00001", "CARD1"))
        ra = [a.add("sale", sale_body("S00001", mode="offline", proof={"card": card},
                                      consumption={"pesticide": 1000}), T0),
              a.add("sale", sale_body("S00002", product="PD20080301", mode="offline", proof={}), T0 + 60_000),
              a.add("void", {"voids": 1, "subject": "S00001", "reason": "wrong_item", "clerk": "c1"}, T0 + 120_000),
              a.add("refusal", {"subject": "S00003", "sale_id": "X1", "items": [], "reasons": ["quota_exceeded"],
                                "clerk": "c1"}, T0 + 180_000)]
        rb = [b.add("sale", sale_body("S00002", mode="offline", proof={}), T0 + 10_000) for _ in range(4)]
        ingest.submit_batch("agri/v1/t/TA/up", "TA", a.batch(ra))
        ingest.submit_batch("agri/v1/t/TB/up", "TB", b.batch(rb[:1]))
        ingest.submit_batch("agri/v1/t/TB/up", "TB", b.batch(rb[2:]))  # seq 2 never comes: a gap
        ingest.submit_batch("agri/v1/t/TC/up", "TC", b"not a batch")   # quarantined
        assert ingest.drain(10)
    finally:
        ingest.stop()
    for f in followers:
        while f.step():
            pass
    conn = store.conn
    supervision = Supervision(conn, cfg, clock)
    supervision.tick(T0 + 7_200_000)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for (t,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name").fetchall()}
    store.close()
    for f in followers:
        f.conn.close()
    for p in work.iterdir():
        p.unlink()
    work.rmdir()
    print(json.dumps(counts, indent=1))


if __name__ == "__main__":
    make(Path(sys.argv[1]).absolute())
