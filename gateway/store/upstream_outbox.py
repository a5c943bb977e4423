"""The durable outbox of the upstream feed: what the provincial platform must
receive, written in the same transaction as the thing it reports (a stored
record, a closed case), so nothing can happen here without being queued there.
Sending is `gateway.supervision.upstream`'s job; its progress and back-off
are the one row of `upstream_state`.

The platform drops ids at or below the last it stored, so the sender must
never send an id after a higher one. On PostgreSQL an id is handed out at
insert and appears at commit, and two writers queue at once (the upstream
follower, a user closing a case in any process): a writer holds a shared lock
from its insert to its commit, and the sender takes it exclusively while it
reads a batch, so every id below the batch's last is committed by then (the
same device as gateway/store/violations.py). SQLite's single writer commits
ids in order by itself."""

from __future__ import annotations

import json

from gateway.store.tx import dialect, lock, lock_shared, transaction

_SENDING_LOCK = "outbox-sending"


def enqueue(conn, now: int, kind: str, payload: dict) -> None:
    lock_shared(conn, _SENDING_LOCK)
    conn.execute("INSERT INTO outbox(created, kind, payload) VALUES (?, ?, ?)",
                 [now, kind, json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))])


def unsent(conn, limit: int) -> list[tuple]:
    """The oldest unsent items, (id, kind, created, payload), in id order.
    PostgreSQL: read once every transaction that queued an item has ended
    (see above), in a short transaction of its own; SQLite reads as it is."""
    query = "SELECT id, kind, created, payload FROM outbox WHERE sent IS NULL ORDER BY id LIMIT ?"
    if dialect(conn) == "sqlite":
        return conn.execute(query, [limit]).fetchall()
    with transaction(conn):
        lock(conn, _SENDING_LOCK)
        return conn.execute(query, [limit]).fetchall()


def init_state(conn) -> None:
    """The sender's state row, once."""
    conn.execute("INSERT INTO upstream_state(id) VALUES (1) ON CONFLICT(id) DO NOTHING")


def state(conn) -> dict:
    row = conn.execute("SELECT failures, next_attempt FROM upstream_state WHERE id=1").fetchone()
    return {"failures": row[0], "next_attempt": row[1]}


def delivered(conn, first: int, last: int, now: int) -> None:
    """The platform stored the items `first`..`last`: they are sent, and the
    back-off starts over. Inside the caller's transaction."""
    conn.execute("UPDATE outbox SET sent=? WHERE id BETWEEN ? AND ? AND sent IS NULL", [now, first, last])
    conn.execute("UPDATE upstream_state SET last_attempt=?, last_success=?, failures=0, "
                 "next_attempt=NULL, sent_upto=? WHERE id=1", [now, now, last])


def failed(conn, now: int, error: str, failures: int, next_attempt: int) -> None:
    conn.execute("UPDATE upstream_state SET last_attempt=?, last_error=?, failures=?, next_attempt=? "
                 "WHERE id=1", [now, error[:300], failures, next_attempt])
