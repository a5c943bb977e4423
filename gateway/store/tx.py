"""The one transaction helper: every write transaction and every savepoint of
the gateway goes through here, so the rollback on error, the joining of a
transaction the caller already holds and the backend's way of taking the write
lock are written once.

SQLite: BEGIN IMMEDIATE takes the database's write lock at the start, so a
read-decide-write (a quota decision) is one serial step and two writers never
deadlock upgrading a read lock. PostgreSQL: BEGIN; the statements themselves
are atomic upserts or take row locks (`SELECT ... FOR UPDATE`), so several
writers run side by side."""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager

SPIN_SLEEP_S = 0.0005


@contextmanager
def transaction(conn, *, spin: float | None = None):
    """BEGIN ... COMMIT around the block, ROLLBACK if it raises; inside a
    transaction the caller already holds, the block simply joins it.

    `spin` (seconds, SQLite only): take the write lock by retrying BEGIN
    IMMEDIATE every half millisecond for that long instead of SQLite's busy
    handler, which backs off to sleeps of up to 100 ms. The ingest writer
    uses it: a follower holding the lock for a short transaction would
    otherwise show up directly in the acks' latency."""
    if conn.in_transaction:
        yield conn
        return
    _begin(conn, spin)
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def dialect(conn) -> str:
    """"sqlite" or "postgresql"; a plain sqlite3 connection (a test's own) is SQLite."""
    return getattr(conn, "dialect", "sqlite")


def _begin(conn, spin: float | None) -> None:
    if dialect(conn) != "sqlite":
        conn.execute("BEGIN")
        return
    if spin is None:
        conn.execute("BEGIN IMMEDIATE")
        return
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        deadline = time.monotonic() + spin
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(SPIN_SLEEP_S)
    finally:
        conn.execute("PRAGMA busy_timeout = 30000")


@contextmanager
def savepoint(conn, name: str):
    """A savepoint inside the caller's transaction: the block's writes are
    undone if it raises, the rest of the transaction stays (a rule or quota
    hook that fails must not lose the record it was called for). `name` is
    a fixed identifier from the code, never data."""
    if not name.isidentifier():
        raise ValueError(f"savepoint name {name!r}")
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield conn
    except BaseException:
        conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
        conn.execute(f"RELEASE SAVEPOINT {name}")
        raise
    conn.execute(f"RELEASE SAVEPOINT {name}")


@contextmanager
def snapshot(conn):
    """A read-only transaction: every read in the block sees the same
    committed state (the config pusher reads balances and `acked_upto`, which
    must agree). SQLite: a deferred BEGIN, which takes no write lock;
    PostgreSQL: REPEATABLE READ, READ ONLY. Joins a transaction already open."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN" if dialect(conn) == "sqlite" else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


def lock(conn, name: str) -> None:
    """Serialise one concern (a subject's quota) inside the caller's write
    transaction, until it ends. SQLite: nothing to do, BEGIN IMMEDIATE already
    holds the database's one write lock. PostgreSQL: a transaction-scoped
    advisory lock on the name's 64-bit hash, so two workers deciding for the
    same subject take turns while others run side by side."""
    if dialect(conn) != "sqlite":
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", [name])


def lock_shared(conn, name: str) -> None:
    """`lock`'s shared mode: holders of it run side by side, and one `lock`
    on the same name waits for all of them and keeps new ones out. A writer
    whose ids commit in any order takes it shared, a reader behind a
    watermark over those ids exclusively (gateway/store/violations.py)."""
    if dialect(conn) != "sqlite":
        conn.execute("SELECT pg_advisory_xact_lock_shared(hashtextextended(?, 0))", [name])
