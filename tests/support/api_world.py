"""A populated supervision database for API and dashboard tests: the grid,
four terminals, signed records through the real ingest and rules, cases filed,
one user per role and area.

Building it runs the real ingest and rules, so a test module builds it once
(`build`) as a template and gives each test its own copy (`copy_of`): a test
that closes a case or posts a photo changes nothing another test sees."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from gateway.enforcement.fleet import provision
from gateway.store import Store, registry, transaction, users, violations
from gateway.supervision import cases, grid
from gateway.supervision.rules import config
from gateway.supervision.service import Supervision
from tests.support.inline_ingest import InlineIngest as Ingest
from tests.support.supervision import (DISTRICT, GRID, KEY, TERMINAL_SHOPS, TOWN1, TOWN2, VILLAGE1, VILLAGE3, Chain,
                                       sale_body)

T0 = 1748746800000  # 2025-06-01 11:00 China time
MASTER_KEY_FILE = "gateway-master.key"   # gateway/store.py's key file next to the database, when it makes one
PASSWORD = "correct-horse-1"
USERS = {"d1": ("district", DISTRICT), "t1": ("town", TOWN1), "t2": ("town", TOWN2),
         "v1": ("village", VILLAGE1), "v3": ("village", VILLAGE3)}


def subjects_table(conn) -> None:
    """Two registered subjects, stored as a registry import stores them."""
    registry.put_subjects(conn, [
        {"id": sid, "name": "张三" if sid == "S00001" else "李四", "status": "active", "town": town,
         "id_number": number, "plots": [{"crop": "rice", "area_cmu": 1000}], "permits": []}
        for sid, town, number in (("S00001", TOWN1, "330113199001011234"), ("S00003", TOWN2, "330113198502023456"))],
        0, 0)


def build(root: Path, clock: dict, db: str | None = None) -> Path | str:
    """`db`: a database URL to build in instead of `root`/gw.db."""
    db = db or root / "gw.db"
    store = Store(db)
    sup = Supervision(store.conn, config.load(), clock=lambda: clock["now"])
    grid.import_grid(store.conn, GRID)
    subjects_table(store.conn)
    for name, (role, area) in USERS.items():
        users.add_user(store.conn, name, role, area, PASSWORD, T0)
    for terminal, shop in TERMINAL_SHOPS.items():
        provision(store, terminal, shop, 0, key_hex=KEY.hex())
    ingest = Ingest(store, lambda *a: None, wall_ms=lambda: clock["now"])
    sup.attach(ingest)
    ingest.start()
    try:
        ta, tc = Chain("TA"), Chain("TC")
        recs_a = [ta.add("sale", sale_body(), T0),
                  ta.add("sale", sale_body(product="PD20080301"), T0 + 60_000),      # banned: case at SHOP1
                  ta.add("refusal", {"items": [], "reasons": ["product_banned"], "clerk": "c1",
                                     "subject": "S00002"}, T0 + 120_000)]
        recs_c = [tc.add("sale", sale_body(subject="S00003", product="PD20080209", card="CARD3"), T0 + 30_000)]
        clock["now"] = T0 + 180_000
        for chain, recs in ((ta, recs_a), (tc, recs_c)):
            ingest.submit_batch(f"agri/v1/t/{chain.terminal}/up", chain.terminal, chain.batch(recs))
        assert ingest.drain(10)
    finally:
        ingest.stop()
    sup.tick()
    store.close()
    return db


HOUR = 3_600_000


def add_queue_findings(db, cfg: dict | None = None) -> None:
    """What a queue must sort out, filed through the real case path: a
    terminal whose clock drifts three times (SHOP4), a month's top buyer, a
    high override rate at SHOP2, and a shared card at SHOP2 filed ten hours
    earlier than the rest (so its deadline comes first)."""
    store = Store(db)
    cfg = cfg or config.load()   # the rules file in force when they are filed: it decides what opens a case
    with transaction(store.conn) as conn:
        for i in range(3):
            violations.report(conn, T0 + i * HOUR, "clock_skew", f"clock_skew:TD:{i}", shop="SHOP4", terminal="TD",
                              detail={"direction": "ahead", "seconds": 400 + i, "record_time": T0 + i * HOUR + 400_000,
                                      "received": T0 + i * HOUR})
        violations.report(conn, T0, "top_buyer", "top_buyer:2025-06:S00007", subject="S00007", shop="SHOP2",
                          detail={"month": "2025-06", "rank": 1, "category": "fert_n", "ratio": 0.95})
        violations.report(conn, T0, "override_rate_high", "override:SHOP2:1", shop="SHOP2",
                          detail={"sales": 20, "overrides": 10, "ratio": 0.5, "window_hours": 168})
        cases.file_new_violations(conn, T0 + 200_000, cfg)
        violations.report(conn, T0, "card_travel_impossible", "travel:CARD9", subject="S00009", shop="SHOP2",
                          terminal="TB", seq=7, detail={"card": "CARD9", "km": 38.2, "minutes": 14.0, "other_shop": "SHOP3",
                                                        "other_terminal": "TC", "other_seq": 1})
        cases.file_new_violations(conn, T0 - 10 * HOUR, cfg)
    store.close()


def add_sales(db, terminal: str, count: int, first_ms: int) -> None:
    """`count` normal sales (urea, a subject each) on `terminal`, a minute
    apart from `first_ms`, through the real ingest and the sales index: a
    ledger longer than a page. The terminal's chain starts at seq 1, so only
    a terminal without records may be given."""
    clock = {"now": first_ms + count * 60_000}
    store = Store(db)
    sup = Supervision(store.conn, config.load(), clock=lambda: clock["now"])
    ingest = Ingest(store, lambda *a: None, wall_ms=lambda: clock["now"])
    sup.attach(ingest)
    ingest.start()
    try:
        chain = Chain(terminal)
        recs = [chain.add("sale", sale_body(subject=f"S2{i:04d}", product="XK13-001-00101", card=f"CARD2{i:04d}"),
                          first_ms + i * 60_000) for i in range(count)]
        ingest.submit_batch(f"agri/v1/t/{terminal}/up", terminal, chain.batch(recs))
        assert ingest.drain(10)
    finally:
        ingest.stop()
    sup.tick()
    store.close()


def copy_of(template: Path, root: Path) -> Path:
    """A private copy of a built database under `root`, through SQLite's backup
    API, so whatever the template still holds in its WAL comes along."""
    root.mkdir(parents=True, exist_ok=True)
    db = root / template.name
    src, dst = sqlite3.connect(template), sqlite3.connect(db)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    key = template.with_name(MASTER_KEY_FILE)   # a gateway made next to its database, if any: the copy's keys need it
    if key.exists():
        shutil.copy2(key, root / MASTER_KEY_FILE)
    return db
