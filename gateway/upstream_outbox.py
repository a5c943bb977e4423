"""The durable outbox of the upstream feed: what the provincial platform must
receive, written in the same transaction as the thing it reports (a stored
record, a closed case), so nothing can happen here without being queued there.
Sending is `gateway.upstream`'s job."""

from __future__ import annotations

import json
import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created     INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    sent        INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox(sent, id);
CREATE TABLE IF NOT EXISTS upstream_state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    last_attempt    INTEGER,
    last_success    INTEGER,
    last_error      TEXT,
    failures        INTEGER NOT NULL DEFAULT 0,
    next_attempt    INTEGER,
    sent_upto       INTEGER NOT NULL DEFAULT 0
);
"""


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def enqueue(conn: sqlite3.Connection, now: int, kind: str, payload: dict) -> None:
    conn.execute("INSERT INTO outbox(created, kind, payload) VALUES (?, ?, ?)",
                 [now, kind, json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))])
