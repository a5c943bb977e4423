"""The gateway's store (gateway/store/): one owner of the schema, one
`connect(url)`, one transaction helper, the same behaviour on SQLite and on
PostgreSQL. Every test here that touches a database runs on both backends."""

from __future__ import annotations

import ast
import re
import threading
from pathlib import Path

import pytest

from gateway import store
from gateway.store import migrations, schema
from gateway.store.connection import postgres_sql

ROOT = Path(__file__).resolve().parents[1]
MASTER_KEY = "22" * 32

EVERY_TABLE = {
    "alerts", "areas", "audit_log", "authorizations", "case_events", "case_photos", "case_proposals",
    "case_violations", "cases", "config_sections", "credit_grades", "faces", "followers", "master_key", "missing",
    "outbox", "quarantine", "quarantine_dropped", "quarantine_spent", "quota_meta", "quota_moves", "quota_sales", "quota_used",
    "notifications", "records", "registry_keys", "sales", "schema_migrations", "shops", "subject_keys", "subjects", "sweep_state",
    "terminal_samples", "terminal_status", "terminals", "tokens", "upstream_state", "users", "violations",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path, monkeypatch):
    """A fresh, empty database on each backend; the master key comes from
    the environment (a database on a server has no directory to keep one in)."""
    monkeypatch.setenv(store.MASTER_KEY_ENV, MASTER_KEY)
    if request.param == "sqlite":
        yield str(tmp_path / "gateway.db")
    else:
        yield request.getfixturevalue("pg_url")
    store.close_pools()


def tables(conn) -> set[str]:
    if conn.dialect == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    else:
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    return {name for (name,) in conn.execute(sql)}


def test_a_fresh_database_gets_the_whole_schema_at_the_latest_version(db_url):
    conn = store.connect(db_url)
    try:
        assert tables(conn) == EVERY_TABLE
        assert migrations.version(conn) == store.SCHEMA_VERSION == migrations.LATEST
        assert dict(conn.execute("SELECT key, value FROM quota_meta")) == {"rev": 0, "subjects_rev": 0, "faces_rev": 0}
        assert {name for (name,) in conn.execute("SELECT name FROM config_sections")} == {
            "catalogue", "params", "revocations"}
    finally:
        conn.close()


def test_opening_again_migrates_nothing_and_keeps_every_row(db_url):
    conn = store.connect(db_url)
    conn.execute("INSERT INTO sweep_state(name, value) VALUES ('kept', 7)")
    conn.close()
    conn = store.connect(db_url)
    try:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(migrations.MIGRATIONS)
        assert conn.execute("SELECT value FROM sweep_state WHERE name = 'kept'").fetchone()[0] == 7
    finally:
        conn.close()


def test_processes_opening_a_fresh_database_at_once_migrate_it_once(db_url):
    """Every process of `gateway run` opens the store at start: the first
    migrates under the write lock, the others find it done."""
    errors, conns = [], []

    def open_one():
        try:
            conns.append(store.connect(db_url))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors
        assert conns[0].execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(migrations.MIGRATIONS)
        assert conns[0].execute("SELECT count(*) FROM config_sections").fetchone()[0] == 3
    finally:
        for c in conns:
            c.close()


def test_a_database_newer_than_this_gateway_is_refused_and_left_alone(db_url):
    conn = store.connect(db_url)
    conn.execute("INSERT INTO schema_migrations(version, name, applied) VALUES (?, 'from the future', 0)",
                 [migrations.LATEST + 1])
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this gateway"):
        store.connect(db_url)
    conn = store.connect(db_url, migrate=False)
    try:
        assert migrations.version(conn) == migrations.LATEST + 1
    finally:
        conn.close()


def case_indexes(conn) -> set[str]:
    if conn.dialect == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'cases'"
    else:
        sql = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'cases'"
    return {name for (name,) in conn.execute(sql)}


def test_a_database_from_before_the_open_cases_index_gets_it_keeping_its_cases(db_url, monkeypatch):
    """Migration 7 indexes the open cases of a database made at version 6."""
    with monkeypatch.context() as m:
        m.setattr(migrations, "MIGRATIONS", [step for step in migrations.MIGRATIONS if step[0] < 7])
        m.setattr(migrations, "LATEST", 6)
        conn = store.connect(db_url)
        conn.execute("INSERT INTO cases(id, opened, updated, state, town, level, codes) VALUES "
                     "(1, 0, 0, 'open', 'T1', 'village', 'over_quota'), (2, 0, 0, 'closed', 'T1', 'village', 'x')")
        assert migrations.version(conn) == 6 and "cases_open" not in case_indexes(conn)
        conn.close()
    conn = store.connect(db_url)
    try:
        assert migrations.version(conn) == migrations.LATEST >= 7
        assert "cases_open" in case_indexes(conn)
        assert conn.execute("SELECT id, state FROM cases ORDER BY id").fetchall() == [(1, "open"), (2, "closed")]
    finally:
        conn.close()


def test_a_transaction_commits_its_block_or_nothing(db_url):
    conn = store.connect(db_url)
    try:
        with store.transaction(conn):
            conn.execute("INSERT INTO sweep_state(name, value) VALUES ('a', 1)")
        with pytest.raises(ZeroDivisionError):
            with store.transaction(conn):
                conn.execute("INSERT INTO sweep_state(name, value) VALUES ('b', 2)")
                1 / 0
        assert not conn.in_transaction
        assert dict(conn.execute("SELECT name, value FROM sweep_state")) == {"a": 1}
    finally:
        conn.close()


def test_a_transaction_inside_another_joins_it(db_url):
    """A helper called inside its caller's transaction (a user added while
    the API writes an audit row) must not commit the caller's half-done work."""
    conn = store.connect(db_url)
    try:
        with pytest.raises(KeyError):
            with store.transaction(conn):
                conn.execute("INSERT INTO sweep_state(name, value) VALUES ('outer', 1)")
                with store.transaction(conn):
                    conn.execute("INSERT INTO sweep_state(name, value) VALUES ('inner', 2)")
                raise KeyError("the caller fails after the helper returned")
        assert conn.execute("SELECT count(*) FROM sweep_state").fetchone()[0] == 0
    finally:
        conn.close()


def test_a_savepoint_undoes_only_its_own_block(db_url):
    """A rule or quota hook that fails rolls back its own writes; the record
    and the follower's cursor in the same transaction stay."""
    conn = store.connect(db_url)
    try:
        with store.transaction(conn):
            conn.execute("INSERT INTO sweep_state(name, value) VALUES ('record', 1)")
            with pytest.raises(ValueError):
                with store.savepoint(conn, "hook"):
                    conn.execute("INSERT INTO sweep_state(name, value) VALUES ('hook', 2)")
                    raise ValueError("rule bug")
            conn.execute("INSERT INTO sweep_state(name, value) VALUES ('cursor', 3)")
        assert dict(conn.execute("SELECT name, value FROM sweep_state")) == {"record": 1, "cursor": 3}
    finally:
        conn.close()
    with pytest.raises(ValueError):
        store.savepoint(conn, "x; DROP TABLE records").__enter__()


def test_terminal_keys_are_sealed_and_open_again_after_a_restart(db_url):
    s = store.Store(db_url)
    s.add_terminal("T1", "ab" * 32, "SHOP1", None, 5)
    sealed = s.conn.execute("SELECT key FROM terminals WHERE id = 'T1'").fetchone()[0]
    s.close()
    assert sealed.startswith(store.SEALED_PREFIX) and "ab" * 32 not in sealed
    s = store.Store(db_url)
    try:
        assert s.terminal_key("T1") == bytes.fromhex("ab" * 32)
        assert [t["id"] for t in s.terminals()] == ["T1"]
    finally:
        s.close()


def test_a_wrong_master_key_stops_the_store_at_open(db_url, monkeypatch):
    s = store.Store(db_url)
    s.add_terminal("T1", "ab" * 32, "SHOP1", None, 5)
    s.close()
    monkeypatch.setenv(store.MASTER_KEY_ENV, "33" * 32)
    with pytest.raises(store.MasterKeyError, match="not the master key"):
        store.Store(db_url)


def test_a_database_on_a_server_needs_a_configured_master_key(pg_url, monkeypatch):
    monkeypatch.delenv(store.MASTER_KEY_ENV, raising=False)
    monkeypatch.delenv(store.KEY_FILE_ENV, raising=False)
    s = store.Store(pg_url)
    try:
        with pytest.raises(store.MasterKeyError, match="needs its master key"):
            s.add_terminal("T1", "ab" * 32, "SHOP1", None, 5)
        assert s.terminals() == []
    finally:
        s.close()
        store.close_pools()


@pytest.mark.parametrize("url", ["mysql://db/gw", "http://x/y", ""])
def test_a_url_of_no_known_backend_is_refused_with_what_is_accepted(url, tmp_path):
    with pytest.raises(store.StoreUrlError, match="postgresql://|empty"):
        store.connect(url)


def test_sqlite_urls_and_paths_name_the_same_file(tmp_path):
    path = tmp_path / "g.db"
    store.connect(f"sqlite:///{path}").close()
    assert path.is_file() and store.sqlite_path(f"sqlite:///{path}") == path


def test_placeholders_become_psycopg_ones_outside_quotes_and_comments():
    assert postgres_sql("SELECT '?', \"a?\", ? -- it's ? here\n, ?, 5 % 2") == \
        "SELECT '?', \"a?\", %s -- it's ? here\n, %s, 5 %% 2"


def test_the_postgres_schema_keeps_every_column_of_the_sqlite_one():
    for statement in schema.BASELINE:
        pg = schema.postgres(statement)
        assert "WITHOUT ROWID" not in pg and "BLOB" not in pg and not re.search(r"\bINTEGER\b", pg)
        names = re.findall(r"^\s+(\w+)\s+[A-Z]", statement, re.M)
        assert names == [n.strip('"') for n in re.findall(r"^\s+(\"?\w+\"?)\s+[A-Z]", pg, re.M)]


def gateway_sources():
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        yield path, path.read_text("utf-8")


def test_no_module_outside_the_store_writes_ddl_checks_tables_or_begins_by_hand():
    """../shared/ARCHITECTURE.md: one owner of the database. DDL, "does this
    table exist", and BEGIN/ROLLBACK live in gateway/store/ only."""
    forbidden = re.compile(r"\"[^\"\n]*\b(CREATE (TABLE|INDEX|VIEW|TRIGGER|UNIQUE)|ALTER TABLE|DROP TABLE|"
                           r"sqlite_master|PRAGMA table_info|BEGIN|ROLLBACK|COMMIT|SAVEPOINT)\b")
    found = [f"{p.relative_to(ROOT)}:{n}" for p, text in gateway_sources() if "gateway/store/" not in str(p)
             for n, line in enumerate(text.splitlines(), 1) if forbidden.search(line)]
    assert found == []


def test_the_store_imports_no_other_gateway_module():
    """The store is the bottom floor: arrows run down only."""
    found = []
    for path in sorted((ROOT / "gateway" / "store").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.name}: {n}" for n in names if n.startswith("gateway") and
                      not n.startswith("gateway.store")]
    assert found == []


def test_one_follower_run_by_two_processes_visits_each_record_once(db_url):
    """A follower's cursor is read and moved in its own transaction; two
    processes running the same follower take turns (BEGIN IMMEDIATE on SQLite,
    the cursor row locked on PostgreSQL), so no record is applied twice."""
    import time

    from gateway.ingest.follow import Follower

    conn = store.connect(db_url)
    with store.transaction(conn):
        for seq in range(1, 41):
            conn.execute("INSERT INTO records(rid, terminal, seq, type, time, digest, prev, record, received) "
                         "VALUES (?, 'T1', ?, 'sale', 0, 'd', 'p', '{}', 0)", [seq, seq])
    conn.close()
    seen, lock = [], threading.Lock()

    def hook(conn, terminal, entry, now):
        time.sleep(0.005)
        with lock:
            seen.append(entry.seq)

    followers = [Follower(db_url, "twice", hook, batch=4) for _ in range(2)]

    def run(f):
        while f.step():
            pass

    threads = [threading.Thread(target=run, args=(f,)) for f in followers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for f in followers:
        f.conn.close()
    assert sorted(seen) == list(range(1, 41))


def test_a_shop_serves_the_subjects_of_its_town_and_of_its_village_and_follows_a_move(db_url):
    """The config push's scope: a shop's town's subjects and its village's
    (registered in another town), found through the search index, and a
    re-import that moves a subject moves it out of the old village."""
    from gateway.enforcement import registry

    def entry(subject, town, village):
        return {"id": subject, "status": "active", "town": town, "village": village, "name": subject, "plots": []}

    conn = store.connect(db_url)
    try:
        registry.import_subjects(conn, [entry("A", "T1", "T1V1"), entry("B", "T2", "T1V1"), entry("C", "T2", "T2V2"),
                                        entry("D", "T1V1", "T9V9")], 1)
        assert registry.area_subjects(conn, {"town": "T1", "village": "T1V1"}) == ["A", "B"]
        assert registry.area_subjects(conn, {"village": "T2V2"}) == ["C"]
        assert registry.area_subjects(conn, {"town": "T2"}) == ["B", "C"]
        registry.import_subjects(conn, [entry("B", "T2", "T2V2")], 2)
        assert registry.area_subjects(conn, {"village": "T1V1"}) == ["A"]
        assert registry.area_subjects(conn, {"village": "T2V2"}) == ["B", "C"]
    finally:
        conn.close()
