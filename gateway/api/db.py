"""Per-thread SQLite connections for the API.

FastAPI runs sync endpoints on a thread pool; SQLite connections must not be
shared across threads mid-transaction, and WAL lets each reader see a
consistent snapshot while ingest writes. Writes use BEGIN IMMEDIATE and the
busy timeout, so they queue behind an ingest commit instead of failing.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path


class Db:
    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()

    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextmanager
    def write(self):
        conn = self.conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def rows(self, sql: str, args=()) -> list[dict]:
        cur = self.conn().execute(sql, list(args))
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def one(self, sql: str, args=()) -> dict | None:
        rows = self.rows(sql, args)
        return rows[0] if rows else None
