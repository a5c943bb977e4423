"""Violations: what the gateway found wrong, one row per finding, deduplicated.

Every detector (the quota ledger's over-quota check, the violation rules, the
integrity alerts) reports through `report`, with a stable reason code and a
dedup key, so one offence seen from several records (e.g. two offline sales
in two shops that together overdraw a balance) is raised once. Cases and the
grid workflow build on these rows.
"""

from __future__ import annotations

import json
import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS violations (
    id          INTEGER PRIMARY KEY,
    time        INTEGER NOT NULL,
    code        TEXT NOT NULL,
    dedup       TEXT NOT NULL UNIQUE,
    subject     TEXT,
    shop        TEXT,
    terminal    TEXT,
    seq         INTEGER,
    detail      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS violations_subject ON violations(subject);
CREATE INDEX IF NOT EXISTS violations_time ON violations(time);
"""


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def report(conn: sqlite3.Connection, now_ms: int, code: str, dedup: str, *, subject: str | None = None,
           shop: str | None = None, terminal: str | None = None, seq: int | None = None,
           detail: dict | None = None) -> bool:
    """Record a violation unless one with the same dedup key exists; True if new.
    Call inside the caller's transaction."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO violations(time, code, dedup, subject, shop, terminal, seq, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [now_ms, code, dedup, subject, shop, terminal, seq, json.dumps(detail or {}, ensure_ascii=False)])
    return cur.rowcount == 1
