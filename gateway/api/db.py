"""Per-thread store connections for the API (`gateway.store.connect`).

FastAPI runs sync endpoints on a thread pool; a connection must not be
shared across threads mid-transaction. On SQLite, WAL lets each reader see a
consistent snapshot while ingest writes, and writes (`gateway.store.transaction`,
BEGIN IMMEDIATE with the busy timeout) queue behind an ingest commit instead
of failing. On PostgreSQL each thread holds a connection of the store's pool.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

from gateway import store
from gateway.store import transaction


class Db:
    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()

    def conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = store.connect(self.path)
            self._local.conn = conn
        return conn

    @contextmanager
    def write(self):
        conn = self.conn()
        with transaction(conn):
            yield conn
