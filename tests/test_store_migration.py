"""A database made by the gateway before its store had one owner (commit
ffbeeef: eleven modules each creating their own tables) migrates in place on
open, keeping every row, and the current code works on it.

The fixture `tests/data/gateway-pre-store.sqlite` was made by that commit's
own commands (tests/data/make_pre_store_db.py says how)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from gateway.supervision import cases
from gateway.store import grid

from gateway.enforcement import quota

from gateway import store

from gateway.store import registry as registry_store, users
from gateway.ingest.follow import Follower
from tests.support.inline_ingest import InlineIngest as Ingest
from gateway.store import migrations
from tests.support.supervision import KEY, Chain, sale_body

FIXTURE = Path(__file__).parent / "data" / "gateway-pre-store.sqlite"
MASTER_KEY = "11" * 32          # tests/data/make_pre_store_db.py
PASSWORD = "pre-store-password"
T0 = 1748746800000


@pytest.fixture
def old_db(tmp_path, monkeypatch):
    monkeypatch.setenv(store.MASTER_KEY_ENV, MASTER_KEY)
    db = tmp_path / "gateway.db"
    shutil.copyfile(FIXTURE, db)
    db.chmod(0o600)
    return db


def every_row(db: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(db)
    try:
        names = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                            "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {n: sorted(conn.execute(f"SELECT * FROM {n}").fetchall(), key=repr) for n in names}
    finally:
        conn.close()


def test_the_fixture_was_made_by_the_code_before_the_store_and_has_rows_everywhere_that_matters():
    before = every_row(FIXTURE)
    assert "schema_migrations" not in before
    for table in ("records", "terminals", "quarantine", "subjects", "quota_used", "quota_moves", "authorizations",
                  "sales", "violations", "cases", "case_events", "users", "areas", "shops", "outbox", "faces",
                  "registry_keys", "followers", "config_sections", "master_key"):
        assert before[table], table


def test_an_old_database_migrates_in_place_keeping_every_row(old_db):
    before = every_row(old_db)
    s = store.Store(old_db)
    s.close()
    after = every_row(old_db)
    assert set(after) == set(before) | {"schema_migrations", "notifications", "quarantine_spent", "subject_keys"}   # 2, 5, 6
    # migration 4 adds terminals.ingest_rev, last, 0 for every terminal
    assert {row[-1] for row in after["terminals"]} == {0}
    for table, rows in before.items():
        width = len(rows[0]) if rows else 0     # later migrations may add columns after the old ones
        assert sorted((r[:width] for r in after[table]), key=repr) == rows, table
    conn = store.connect(old_db)
    try:
        assert migrations.version(conn) == migrations.LATEST
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(migrations.MIGRATIONS)
    finally:
        conn.close()


def test_the_current_code_works_on_a_migrated_database(old_db):
    s = store.Store(old_db)
    try:
        conn = s.conn
        # the terminals keep their sealed keys under the old master key
        assert s.terminal_key("TA") == KEY
        # the users log in with their old passwords
        assert users.login(conn, "d1", PASSWORD, T0)[1].role == "district"
        # the registry, the quota ledger and the grid read as before
        assert quota.report(conn, "S00001", quota.ConfigCache(), "2025-06-01")
        assert grid.shop(conn, "SHOP1").designated
        # every subject stored before the desk searched by index is found by it (migration 6)
        names = dict(conn.execute("SELECT id, data FROM subjects"))
        assert names
        for sid, data in names.items():
            keys = {tuple(k) for k in conn.execute("SELECT kind, key FROM subject_keys WHERE subject = ?", [sid])}
            assert keys and keys == registry_store.search_keys(json.loads(data)), sid
        assert cases.get(conn, conn.execute("SELECT min(id) FROM cases").fetchone()[0]) is not None
        # a terminal that never sold before ingests, and the old followers go on from their cursors
        stored = s.count_records()
        ingest = Ingest(s, lambda *a: None, wall_ms=lambda: T0 + 9_000_000)
        ingest.start()
        try:
            td = Chain("TD")
            records = [td.add("sale", sale_body("S00003", mode="offline", proof={}, consumption={"pesticide": 500}),
                              T0 + 8_000_000)]
            ingest.submit_batch("agri/v1/t/TD/up", "TD", td.batch(records))
            assert ingest.drain(10)
        finally:
            ingest.stop()
        assert s.count_records() == stored + 1
        follower = Follower(old_db, "quota", quota.RecordApplier(quota.ConfigCache()), lambda: T0 + 9_000_000)
        try:
            assert follower.step() == 1
        finally:
            follower.conn.close()
        moved = conn.execute("SELECT terminal, delta, kind FROM quota_moves WHERE terminal = 'TD'").fetchall()
        assert moved == [("TD", 500, "sale")]
        detail = json.loads(conn.execute("SELECT detail FROM violations ORDER BY id LIMIT 1").fetchone()[0])
        assert isinstance(detail, dict)
    finally:
        s.close()


def test_a_sales_index_from_before_subject_groups_gets_its_column(tmp_path):
    """`sales.subject_group` came later than `sales`: a database with the
    first shape gets the column, its rows kept."""
    db = tmp_path / "gateway.db"
    conn = sqlite3.connect(db)
    shape = store.schema.RULES[0].replace("    subject_group TEXT,             -- the buyer's registry group "
                                          "at indexing time\n", "")
    assert "subject_group" not in shape
    conn.execute(shape)
    conn.execute("INSERT INTO sales(terminal, seq, type, time, received, day) VALUES ('T1', 1, 'sale', 1, 1, 'd')")
    conn.commit()
    conn.close()
    conn = store.connect(db)
    try:
        assert conn.execute("SELECT terminal, seq, subject_group FROM sales").fetchall() == [("T1", 1, None)]
    finally:
        conn.close()
