"""The durable outbox of the upstream feed: what the provincial platform must
receive, written in the same transaction as the thing it reports (a stored
record, a closed case), so nothing can happen here without being queued there.
Sending is `gateway.supervision.upstream`'s job."""

from __future__ import annotations

import json


def enqueue(conn, now: int, kind: str, payload: dict) -> None:
    conn.execute("INSERT INTO outbox(created, kind, payload) VALUES (?, ?, ?)",
                 [now, kind, json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))])
