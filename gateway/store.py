"""The gateway's store (SQLite, the embedded default): every record once, and
everything that could not be accepted, with its reason.

Key facts the schema keeps:
- `records` has one row per (terminal, seq): a record delivered again is a no-op.
  Rows are kept in storage order (`rid`, the rowid), so ingest appends at the
  end of the table and the unique (terminal, seq) index stays small; a
  WITHOUT ROWID table keyed by (terminal, seq) made every insert a write into
  the middle of a b-tree of whole ~600-byte rows.
- `quarantine` keeps what failed verification, with the reason and the raw
  bytes: nothing that arrives is silently dropped. Within each terminal's
  hourly budget (gateway/ingest.py, `QuarantineBudget`); past it,
  `quarantine_dropped` counts the rejects per terminal, hour and reason.
- `missing` holds sequence ranges a terminal's ledger no longer has (a deleted
  row): they are alerted and accounted for, so the terminal's watermark can move.
- `terminals.acked_upto` is the cumulative ack: every seq at or below it is in
  `records`, `missing`, or an accountable `quarantine` row. It is updated in
  the same transaction as the rows it covers.

WAL with synchronous=FULL: the ack goes out only after a commit that is on disk.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from gateway import violations

RECORDS_TABLE = """
CREATE TABLE IF NOT EXISTS records (
    rid         INTEGER PRIMARY KEY,   -- storage order, for followers (gateway/follow.py)
    terminal    TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    type        TEXT NOT NULL,
    time        INTEGER NOT NULL,
    digest      TEXT NOT NULL,
    prev        TEXT NOT NULL,
    record      TEXT NOT NULL,
    received    INTEGER NOT NULL
)"""

SCHEMA = RECORDS_TABLE + """;
CREATE UNIQUE INDEX IF NOT EXISTS records_key ON records(terminal, seq);
CREATE TABLE IF NOT EXISTS terminals (
    id          TEXT PRIMARY KEY,
    key         TEXT NOT NULL,
    shop        TEXT,
    mqtt_hash   TEXT,
    acked_upto  INTEGER NOT NULL DEFAULT 0,
    head        INTEGER,
    state       TEXT,
    last_seen   INTEGER,
    created     INTEGER
);
CREATE TABLE IF NOT EXISTS quarantine (
    id          INTEGER PRIMARY KEY,
    received    INTEGER NOT NULL,
    topic       TEXT NOT NULL,
    terminal    TEXT,
    seq         INTEGER,
    accountable INTEGER NOT NULL DEFAULT 0,
    reason      TEXT NOT NULL,
    detail      TEXT,
    payload     BLOB
);
CREATE INDEX IF NOT EXISTS quarantine_terminal ON quarantine(terminal, seq);
CREATE INDEX IF NOT EXISTS quarantine_received ON quarantine(terminal, received);
CREATE TABLE IF NOT EXISTS quarantine_dropped (  -- rejects over a terminal's hourly quarantine budget
    terminal    TEXT NOT NULL,
    hour        INTEGER NOT NULL,              -- gateway time in ms // 3600000
    reason      TEXT NOT NULL,
    count       INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    PRIMARY KEY (terminal, hour, reason)
);
CREATE TABLE IF NOT EXISTS missing (
    terminal    TEXT NOT NULL,
    seq_from    INTEGER NOT NULL,
    seq_to      INTEGER NOT NULL,
    noticed     INTEGER NOT NULL,
    PRIMARY KEY (terminal, seq_from)
);
CREATE TABLE IF NOT EXISTS followers (  -- gateway/follow.py: each follower's cursor in `rid`
    name        TEXT PRIMARY KEY,
    rid         INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id          INTEGER PRIMARY KEY,
    time        INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    terminal    TEXT,
    seq         INTEGER,
    seq_to      INTEGER,
    detail      TEXT,
    UNIQUE (kind, terminal, seq)
);
"""


def connect(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    _migrate_records(conn)
    conn.executescript(SCHEMA)
    violations.ensure_schema(conn)
    return conn


def _migrate_records(conn: sqlite3.Connection) -> None:
    """Databases from before rid became the rowid keep every row: they are
    copied, in storage order, into the current layout once, under the write
    lock (the other gateway processes open the store after the first)."""
    def old_layout() -> bool:
        row = conn.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='records'").fetchone()
        return bool(row) and "WITHOUT ROWID" in row[0].upper()

    if not old_layout():
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if old_layout():
            conn.execute("ALTER TABLE records RENAME TO records_old")
            conn.execute("DROP INDEX IF EXISTS records_rid")
            conn.execute(RECORDS_TABLE)
            conn.execute("INSERT INTO records(rid, terminal, seq, type, time, digest, prev, record, received) "
                         "SELECT rid, terminal, seq, type, time, digest, prev, record, received "
                         "FROM records_old ORDER BY rid")
            conn.execute("DROP TABLE records_old")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class Store:
    """Thin access to the gateway database; ingest owns the write transactions."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.conn = connect(self.path)
        self.lock = threading.RLock()

    def close(self) -> None:
        self.conn.close()

    # -- terminals

    def add_terminal(self, terminal: str, key_hex: str, shop: str | None, mqtt_hash: str | None, now_ms: int) -> None:
        with self.lock:
            self.conn.execute(
                "INSERT INTO terminals(id, key, shop, mqtt_hash, created) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET key=excluded.key, shop=excluded.shop, mqtt_hash=excluded.mqtt_hash",
                [terminal, key_hex, shop, mqtt_hash, now_ms],
            )

    def terminal_key(self, terminal: str) -> bytes | None:
        with self.lock:
            row = self.conn.execute("SELECT key FROM terminals WHERE id = ?", [terminal]).fetchone()
        return bytes.fromhex(row[0]) if row else None

    def terminals(self) -> list[dict]:
        with self.lock:
            cursor = self.conn.execute(
                "SELECT id, shop, mqtt_hash, acked_upto, head, state, last_seen FROM terminals ORDER BY id")
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row)) for row in cursor]

    # -- reading back

    def export(self, terminal: str | None = None):
        """Stored record texts, by terminal and seq."""
        sql = "SELECT record FROM records"
        args: list = []
        if terminal:
            sql += " WHERE terminal = ?"
            args.append(terminal)
        sql += " ORDER BY terminal, seq"
        for (text,) in self.conn.execute(sql, args):
            yield text

    def count_records(self) -> int:
        with self.lock:
            return self.conn.execute("SELECT count(*) FROM records").fetchone()[0]

    def alerts(self) -> list[dict]:
        with self.lock:
            cursor = self.conn.execute("SELECT id, time, kind, terminal, seq, seq_to, detail FROM alerts ORDER BY id")
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row)) for row in cursor]

    def quarantine_dropped(self) -> list[dict]:
        with self.lock:
            cursor = self.conn.execute(
                "SELECT terminal, hour, reason, count, bytes FROM quarantine_dropped ORDER BY terminal, hour, reason")
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row)) for row in cursor]

    def quarantined(self) -> list[dict]:
        with self.lock:
            cursor = self.conn.execute(
                "SELECT id, received, topic, terminal, seq, accountable, reason, detail FROM quarantine ORDER BY id")
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row)) for row in cursor]


class KeyCache:
    """Terminal record keys, read from the store once each. A terminal
    registered later is found on its first message; keys are never changed
    in place (re-provisioning a terminal means restarting the gateway)."""

    def __init__(self, store: Store):
        self.store = store
        self._keys: dict[str, bytes] = {}

    def __call__(self, terminal: str) -> bytes | None:
        key = self._keys.get(terminal)
        if key is None:
            key = self.store.terminal_key(terminal)
            if key is not None:
                self._keys[terminal] = key
        return key
