"""The sweeps' watermarks (`sweep_state`): how far each sweep that reads a
table by id has come (the case filing over violations, the notifications over
case events, the rules' sweep over alerts). Moved in the same transaction as
the work done for the rows below it, so each row is handled exactly once."""

from __future__ import annotations


def get(conn, name: str) -> int:
    row = conn.execute("SELECT value FROM sweep_state WHERE name = ?", [name]).fetchone()
    return row[0] if row else 0


def move(conn, name: str, value: int) -> None:
    conn.execute("INSERT INTO sweep_state(name, value) VALUES (?, ?) "
                 "ON CONFLICT(name) DO UPDATE SET value = excluded.value", [name, value])
