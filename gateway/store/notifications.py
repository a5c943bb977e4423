"""The inspectors' notification outbox: one row a message, queued in the same
transaction that moves the cursor over the case events it reports (the
watermark 'notify', gateway/store/watermarks.py), and sent (and retried) by
gateway/supervision/notify.py. `dedup` makes a message queued twice (a sweep
re-run after a crash) one row."""

from __future__ import annotations

import json

COLUMNS = ("id", "created", "case_id", "kind", "recipient", "payload", "attempts", "next_at", "sent", "last_error")


def enqueue(conn, now: int, case_id: int, kind: str, recipient: str | None, dedup: str, payload: dict) -> bool:
    """Queue one message; False when `dedup` was queued before."""
    row = conn.execute(
        "INSERT INTO notifications(created, case_id, kind, recipient, dedup, payload, next_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(dedup) DO NOTHING RETURNING id",
        [now, case_id, kind, recipient, dedup, json.dumps(payload, ensure_ascii=False, sort_keys=True), now]).fetchone()
    return row is not None


def due(conn, now: int, limit: int = 20) -> list[dict]:
    rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM notifications WHERE sent IS NULL AND next_at <= ? "
                        "ORDER BY next_at, id LIMIT ?", [now, limit]).fetchall()
    out = []
    for row in rows:
        item = dict(zip(COLUMNS, row))
        item["payload"] = json.loads(item["payload"])
        out.append(item)
    return out


def mark_sent(conn, notification_id: int, now: int) -> None:
    conn.execute("UPDATE notifications SET sent = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?",
                 [now, notification_id])


def mark_failed(conn, notification_id: int, next_at: int, error: str) -> None:
    conn.execute("UPDATE notifications SET attempts = attempts + 1, next_at = ?, last_error = ? WHERE id = ?",
                 [next_at, error[:500], notification_id])


def listing(conn, case_id: int | None = None, limit: int = 100) -> list[dict]:
    """Newest first: what was sent, what waits and why it failed."""
    where, args = ("WHERE case_id = ?", [case_id]) if case_id is not None else ("", [])
    rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM notifications {where} ORDER BY id DESC LIMIT ?",
                        [*args, limit]).fetchall()
    return [dict(zip(COLUMNS, row), payload=json.loads(row[5])) for row in rows]

