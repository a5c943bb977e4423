"""Violations: what the gateway found wrong, one row per finding, deduplicated.

Every detector (the quota ledger's over-quota check, the violation rules, the
integrity alerts) reports through `report`, with a stable reason code and a
dedup key, so one offence seen from several records (e.g. two offline sales
in two shops that together overdraw a balance) is raised once. Cases and the
grid workflow build on these rows. The table is the store's (gateway/store/schema.py).

Cases file violations in id order behind a watermark (`after`, called by
gateway/supervision/cases.py `file_new_violations`). On PostgreSQL an id is
handed out at insert and the row appears at commit, and several writers
insert at once (the quota and rules followers, the sweeps), so id 7 can
appear after id 8 and a watermark already at 8 would pass over it for good.
A writer therefore holds a shared lock from its insert to its commit, and the
filing takes it exclusively: when the filing reads, every id handed out so
far is committed or gone.
Writers never wait for each other, only for a filing (milliseconds).
SQLite's single writer commits ids in order by itself.
"""

from __future__ import annotations

import json

from gateway.store.tx import lock, lock_shared

_FILING_LOCK = "violations-filing"


def report(conn, now_ms: int, code: str, dedup: str, *, subject: str | None = None,
           shop: str | None = None, terminal: str | None = None, seq: int | None = None,
           detail: dict | None = None) -> bool:
    """Record a violation unless one with the same dedup key exists; True if new.
    Call inside the caller's transaction."""
    lock_shared(conn, _FILING_LOCK)
    cur = conn.execute(
        "INSERT INTO violations(time, code, dedup, subject, shop, terminal, seq, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(dedup) DO NOTHING",
        [now_ms, code, dedup, subject, shop, terminal, seq, json.dumps(detail or {}, ensure_ascii=False)])
    return cur.rowcount == 1


def wait_for_writers(conn) -> None:
    """Before reading violations behind a watermark, inside the filing's
    transaction: wait until no transaction that inserted one is still open,
    and keep new ones out until this transaction ends (see above)."""
    lock(conn, _FILING_LOCK)


VIOLATION_FIELDS = ("id", "code", "subject", "shop", "terminal", "seq")


def after(conn, mark: int, limit: int) -> list[dict]:
    """The violations above `mark`, oldest first, at most `limit`; call
    `wait_for_writers` first in the same transaction."""
    rows = conn.execute("SELECT id, code, subject, shop, terminal, seq FROM violations WHERE id>? ORDER BY id LIMIT ?",
                        [mark, limit]).fetchall()
    return [dict(zip(VIOLATION_FIELDS, r)) for r in rows]
