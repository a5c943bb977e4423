"""Numbered migrations: the only code that changes the gateway's schema.

`schema_migrations` records each version applied. Opening a database applies
the missing ones in order, in one write transaction taken by the first process
to get there (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL); the
others find the work done when they get the lock, and a database already at
the latest version costs one query to open.

Migration 1 is the baseline. On a database made before the store had one
owner (every module created its own tables, commit ffbeeef and earlier) it
brings whatever is there to the baseline in place, keeping every row:
- `records` in the WITHOUT ROWID layout of the first versions is copied, in
  storage order, into the rowid layout;
- `sales` from before subject groups gets its `subject_group` column;
- tables a part of the gateway never created (a database that only ever saw
  ingest has no cases) are created empty;
- the former opaque `gallery` row of `config_sections` is dropped (the
  gallery is built per shop from `faces`), and the catalogue, policy params
  and revocations get the shipped samples as version 1 where none were
  imported, so a fresh gateway decides.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Callable

from gateway.store import registry, schema
from gateway.store.tx import transaction
from protocols import catalogue, clock, configsync

log = logging.getLogger(__name__)

_PG_LOCK = 0x61677269  # pg_advisory_xact_lock key of the schema ("agri")


def _baseline(conn) -> None:
    sqlite = conn.dialect == "sqlite"
    if sqlite:
        _records_rowid_layout(conn)
    for statement in schema.BASELINE:
        conn.execute(statement if sqlite else schema.postgres(statement))
    if sqlite and "subject_group" not in _columns(conn, "sales"):
        conn.execute("ALTER TABLE sales ADD COLUMN subject_group TEXT")
    if not sqlite:
        # PostgreSQL has no rowid: the tables whose queries order by insertion get one
        conn.execute("ALTER TABLE tokens ADD COLUMN IF NOT EXISTS rowid BIGINT GENERATED ALWAYS AS IDENTITY")
    conn.execute(schema.SALES_GROUP_INDEX)
    for key in schema.META_COUNTERS:
        conn.execute("INSERT INTO quota_meta(key, value) VALUES (?, 0) ON CONFLICT(key) DO NOTHING", [key])
    conn.execute("DELETE FROM config_sections WHERE name = ?", [configsync.GALLERY])
    _seed_config(conn)


def _records_rowid_layout(conn) -> None:
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='records'").fetchone()
    if not row or "WITHOUT ROWID" not in row[0].upper():
        return
    conn.execute("ALTER TABLE records RENAME TO records_old")
    conn.execute("DROP INDEX IF EXISTS records_rid")
    conn.execute(schema.RECORDS[0])
    conn.execute("INSERT INTO records(rid, terminal, seq, type, time, digest, prev, record, received) "
                 "SELECT rid, terminal, seq, type, time, digest, prev, record, received "
                 "FROM records_old ORDER BY rid")
    conn.execute("DROP TABLE records_old")


def _columns(conn, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def _seed_config(conn) -> None:
    path = catalogue.default_path()
    params_path = os.path.join(os.path.dirname(path), "policy_params.json")

    def params():
        with open(params_path, encoding="utf-8") as f:
            return json.load(f)

    seeds = {
        configsync.CATALOGUE: catalogue.load,
        configsync.PARAMS: params,
        configsync.REVOCATIONS: lambda: {"cards": []},
    }
    now = clock.wall_ms()
    for name, make in seeds.items():
        if conn.execute("SELECT 1 FROM config_sections WHERE name = ?", [name]).fetchone() is None:
            conn.execute("INSERT INTO config_sections(name, version, content, updated) VALUES (?, 1, ?, ?) "
                         "ON CONFLICT(name) DO NOTHING", [name, configsync.section_text(make()), now])


def _tables(statements: list[str]) -> Callable:
    """A migration that creates new tables and indexes: nothing to carry over."""
    def apply(conn) -> None:
        for statement in statements:
            conn.execute(statement if conn.dialect == "sqlite" else schema.postgres(statement))
    return apply


def _user_display_names(conn) -> None:
    """Staff are assigned cases by login name (`v1`, `zhangwei`); the
    dashboard shows them by the name people know them by (issue 18, item 7).
    Nullable: a user without one is shown by login name."""
    conn.execute("ALTER TABLE users ADD COLUMN display_name TEXT")


def _shared_ingest(conn) -> None:
    """Several ingest writers on one database (`gateway run --share-group`):
    - `terminals.ingest_rev` counts the writes of a terminal's ingest state; a
      writer that finds another value than the one it last wrote reloads that
      terminal's progress before using it (gateway/ingest/writer.py, `_claim`);
    - the database numbers the records (`rid`) instead of the writer: on
      PostgreSQL the identity sequence is moved past the rids the single
      writer of earlier versions assigned itself."""
    if conn.dialect == "sqlite":
        if "ingest_rev" not in _columns(conn, "terminals"):
            conn.execute("ALTER TABLE terminals ADD COLUMN ingest_rev INTEGER NOT NULL DEFAULT 0")
        return
    conn.execute("ALTER TABLE terminals ADD COLUMN IF NOT EXISTS ingest_rev BIGINT NOT NULL DEFAULT 0")
    conn.execute("SELECT setval(pg_get_serial_sequence('records', 'rid'), coalesce(max(rid), 0) + 1, false) "
                 "FROM records")


def _subject_keys(conn) -> None:
    _tables(schema.SUBJECT_KEYS)(conn)
    registry.rebuild_search_keys(conn)


MIGRATIONS: list[tuple[int, str, Callable]] = [
    (1, "baseline: every concern's tables in one schema", _baseline),
    (2, "notifications: the inspectors' webhook outbox", _tables(schema.NOTIFICATIONS)),
    (3, "users.display_name: staff shown by name", _user_display_names),
    (4, "shared ingest: terminals.ingest_rev, rid from the database", _shared_ingest),
    (5, "quarantine_spent: one quarantine budget per terminal across all ingest workers",
     _tables(schema.QUARANTINE_SPENT)),
    (6, "subject_keys: the desk finds a subject by index, from every stored entry", _subject_keys),
    (7, "cases_open: the overview counts open cases from an index of them", _tables(schema.CASES_OPEN)),
]
LATEST = MIGRATIONS[-1][0]


def version(conn) -> int:
    """The schema version of the database (0: none recorded)."""
    if conn.dialect == "sqlite":
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations'").fetchone()
    else:
        exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0]
    if not exists:
        return 0
    return conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]


def migrate(conn) -> int:
    """Apply the missing migrations; returns the version now. Refuses a
    database newer than this code (a downgrade would write to a schema it
    does not know)."""
    current = version(conn)
    if current == LATEST:
        return current
    if current > LATEST:
        raise RuntimeError(f"the database is at schema version {current}, newer than this gateway ({LATEST}): "
                           "run the gateway version that made it")
    with transaction(conn):
        if conn.dialect != "sqlite":
            conn.execute("SELECT pg_advisory_xact_lock(?)", [_PG_LOCK])
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                     "name TEXT NOT NULL, applied BIGINT NOT NULL)")
        current = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]
        for number, name, apply in MIGRATIONS:
            if number <= current:
                continue
            apply(conn)
            conn.execute("INSERT INTO schema_migrations(version, name, applied) VALUES (?, ?, ?)",
                         [number, name, clock.wall_ms()])
            log.info("schema migration applied version=%d name=%s", number, name)
            current = number
    return current
