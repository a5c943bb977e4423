"""Violations: what the gateway found wrong, one row per finding, deduplicated.

Every detector (the quota ledger's over-quota check, the violation rules, the
integrity alerts) reports through `report`, with a stable reason code and a
dedup key, so one offence seen from several records (e.g. two offline sales
in two shops that together overdraw a balance) is raised once. Cases and the
grid workflow build on these rows. The table is the store's (gateway/store/schema.py).
"""

from __future__ import annotations

import json


def report(conn, now_ms: int, code: str, dedup: str, *, subject: str | None = None,
           shop: str | None = None, terminal: str | None = None, seq: int | None = None,
           detail: dict | None = None) -> bool:
    """Record a violation unless one with the same dedup key exists; True if new.
    Call inside the caller's transaction."""
    cur = conn.execute(
        "INSERT INTO violations(time, code, dedup, subject, shop, terminal, seq, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(dedup) DO NOTHING",
        [now_ms, code, dedup, subject, shop, terminal, seq, json.dumps(detail or {}, ensure_ascii=False)])
    return cur.rowcount == 1
