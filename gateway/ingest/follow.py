"""Followers: work done on stored records after ingest has committed and acked.

Ingest's transaction holds only what must be atomic with storing a record (the
record itself, its bookkeeping, quota consumption). Everything else that reads
each record once — the supervision rules, the upstream feed — follows the
`records` table in the order records were stored (`rid`), on its own thread
and connection, and moves its cursor in the same transaction as its own writes,
so each record is processed exactly once even across crashes. Ingest
throughput then does not depend on how much the rules have to do, and a slow
rule only makes the follower lag behind, visibly (`lag`).

Batches are small (16 records) because a follower's transaction holds the
database's single write lock, and ingest must never wait long for it; while a
follower is far behind (a burst is being ingested) it pauses between batches,
leaving the lock to ingest, and catches up when the burst is over.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable

from gateway.store import connect, transaction
from gateway.store.dialect import for_update
from gateway.ingest.verify import Entry
from protocols.clock import wall_ms as now_ms

log = logging.getLogger(__name__)

BEHIND = 2000       # records of lag that mean "a burst is going on"
PAUSE = 0.001       # seconds between batches: room for ingest to take the write lock
BURST_PAUSE = 0.01  # seconds between batches while behind

Hook = Callable[[object, str, Entry, int], None]  # (connection, terminal, entry, now)


class Follower:
    def __init__(self, db_path: str | Path, name: str, hook: Hook,
                 wall_ms: Callable[[], int] = now_ms, batch: int = 16,
                 poll: float = 1.0):
        self.name, self.hook, self.wall_ms, self.batch = name, hook, wall_ms, batch
        self.poll = poll  # how often to look without a notify (another process stores)
        self.db_path = db_path
        self.conn = connect(db_path)
        self.conn.execute("INSERT INTO followers(name, rid) VALUES (?, 0) ON CONFLICT(name) DO NOTHING", [name])
        self.cursor = self.conn.execute("SELECT rid FROM followers WHERE name = ?", [name]).fetchone()[0]
        self.lock = threading.RLock()  # held while processing: others sharing this connection wait
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.processed = 0
        self.behind = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"follow-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)

    def notify(self) -> None:
        self._wake.set()

    def lag(self) -> int:
        with self.lock:
            top = self.conn.execute("SELECT coalesce(max(rid), 0) FROM records").fetchone()[0]
        return top - self.cursor

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll)
            self._wake.clear()
            try:
                while not self._stop.is_set() and self.step():
                    self._stop.wait(BURST_PAUSE if self.behind > BEHIND else PAUSE)
            except Exception:
                log.exception("follower %s failed; retrying from rid %d", self.name, self.cursor)
                self._stop.wait(1.0)
                self._reconnect()

    def _reconnect(self) -> None:
        """A fresh connection after a failure: when the database restarted,
        the old one is dead for good (a PostgreSQL session does not come
        back), and retrying on it would stall the follower for ever. The
        cursor is read again, FOR UPDATE, by the next step."""
        with self.lock:
            try:
                self.conn.close()
            except Exception:
                pass
            try:
                self.conn = connect(self.db_path)
            except Exception as err:   # still down: the next round tries again
                log.warning("follower %s cannot reconnect: %s", self.name, err)

    def step(self) -> int:
        """Process the next batch of stored records; returns how many."""
        with self.lock:
            conn = self.conn
            top = conn.execute("SELECT max(rid) FROM records").fetchone()[0]
            if top is None or top <= self.cursor:
                return 0
            with transaction(conn):
                # the cursor as committed: another process may run this follower too
                self.cursor = conn.execute("SELECT rid FROM followers WHERE name = ?" + for_update(conn),
                                           [self.name]).fetchone()[0]
                rows = conn.execute(
                    "SELECT rid, terminal, seq, type, time, digest, prev, record FROM records "
                    "WHERE rid > ? ORDER BY rid LIMIT ?", [self.cursor, self.batch]).fetchall()
                if not rows:
                    return 0
                # read after the rows, not before the lock wait: a record stored
                # while this waited must not look received before it was made
                now = self.wall_ms()
                for rid, terminal, seq, rtype, time_ms, digest, prev, text in rows:
                    self.hook(conn, terminal, Entry(seq, True, text, rtype, time_ms, digest, prev), now)
                conn.execute("UPDATE followers SET rid = ? WHERE name = ?", [rows[-1][0], self.name])
            self.cursor = rows[-1][0]
            self.behind = top - self.cursor
            self.processed += len(rows)
            return len(rows)
