"""The fleet repository: the terminals as supervision sees them (their shop,
their health), their last reported status and versions
(`terminal_status`, kept by gateway/supervision/fleet_status.py), and what the
config push reads to decide what each terminal lacks
(gateway/enforcement/configpush.py). Writes of the terminals' ingest state
(watermarks, online/offline) are ingest's (gateway/ingest/writer.py)."""

from __future__ import annotations


def terminal_shop(conn, terminal: str) -> str | None:
    row = conn.execute("SELECT shop FROM terminals WHERE id=?", [terminal]).fetchone()
    return row[0] if row else None
