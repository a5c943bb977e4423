"""The quota ledger's repository: the used balances (`quota_used`) and their
audit trail (`quota_moves`), the online authorizations, the sales the ledger
has counted (`quota_sales`), and the ledger's revision (`quota_meta`). What
a sale or a void moves, and whether a request is approved, is decided in
gateway/enforcement/quota.py; every function here runs inside the caller's
transaction, which also holds the subject's lock (`gateway.store.lock`).

Balances change only in `move`, and each change is one atomic statement,
`INSERT ... ON CONFLICT (subject, category, period) DO UPDATE SET used =
quota_used.used + excluded.used`: on PostgreSQL two workers moving the same
balance both count, whatever else they read.

JSON columns (an authorization's consumption and decision, what a sale
applied) are returned parsed: [[category, period, amount], ...] and the wire
decision.
"""

from __future__ import annotations

import json
from typing import NamedTuple


class Authorization(NamedTuple):
    id: int
    state: str          # held, matched, released, refused, superseded
    consumption: list   # [[category, period, amount], ...] it holds
    subject: str | None
    decision: dict | None


class Sale(NamedTuple):
    subject: str | None
    applied: list       # [[category, period, amount], ...] the sale counts
    voided_by: int | None
    auth: int | None


# ---------------------------------------------------------------- balances

def used_rows(conn, subject: str) -> list[tuple[str, str, int]]:
    """(category, period, used) of every balance of a subject."""
    return conn.execute("SELECT category, period, used FROM quota_used WHERE subject = ?", [subject]).fetchall()


def used_in(conn, subject: str, category: str, period: str) -> int:
    row = conn.execute("SELECT used FROM quota_used WHERE subject = ? AND category = ? AND period = ?",
                       [subject, category, period]).fetchone()
    return row[0] if row else 0


def rev(conn) -> int:
    """The ledger's revision: one more for every change of balances."""
    return conn.execute("SELECT value FROM quota_meta WHERE key = 'rev'").fetchone()[0]


def move(conn, now: int, subject: str, moves, kind: str, terminal=None, seq=None, auth=None) -> list:
    """Apply [[category, period, delta], ...]: the one place balances change,
    each with its audit row; returns the moves that moved something."""
    moves = [m for m in moves if m[2]]
    if not moves:
        return moves
    revision = conn.execute("UPDATE quota_meta SET value = value + 1 WHERE key = 'rev' RETURNING value").fetchone()[0]
    for category, period, delta in moves:
        conn.execute(
            "INSERT INTO quota_used(subject, category, period, used, rev) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(subject, category, period) DO UPDATE SET used = quota_used.used + excluded.used, "
            "rev = excluded.rev",
            [subject, category, period, delta, revision])
        conn.execute("INSERT INTO quota_moves(time, subject, category, period, delta, kind, terminal, seq, auth) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     [now, subject, category, period, delta, kind, terminal, seq, auth])
    return moves


# ---------------------------------------------------------------- authorizations

_AUTH_COLUMNS = "id, state, consumption, subject, decision"


def _authorization(row) -> Authorization | None:
    if row is None:
        return None
    return Authorization(row[0], row[1], json.loads(row[2]), row[3], json.loads(row[4]) if row[4] is not None else None)


def authorization_for_sale(conn, terminal: str, sale_id: str) -> Authorization | None:
    """The authorization a terminal's sale asked for (one per (terminal, sale_id))."""
    return _authorization(conn.execute(f"SELECT {_AUTH_COLUMNS} FROM authorizations WHERE terminal = ? AND sale_id = ?",
                                       [terminal, sale_id]).fetchone())


def authorization_by_id(conn, rowid: int, terminal: str) -> Authorization | None:
    """Authorization `rowid`, if it was given to `terminal`."""
    return _authorization(conn.execute(f"SELECT {_AUTH_COLUMNS} FROM authorizations WHERE id = ? AND terminal = ?",
                                       [rowid, terminal]).fetchone())


def add_authorization(conn, terminal: str, sale_id: str, request: str, subject: str, now: int, state: str,
                      consumption: list, decision: dict) -> int:
    """Store a decided request (`state` held or refused); returns its row id (the wire id's number)."""
    return conn.execute(
        "INSERT INTO authorizations(terminal, sale_id, request, subject, time, state, consumption, decision) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        [terminal, sale_id, request, subject, now, state, json.dumps(consumption),
         json.dumps(decision, ensure_ascii=False)]).fetchone()[0]


def supersede(conn, terminal: str, sale_id: str, request: str, subject: str | None, now: int,
              seq: int | None = None) -> None:
    """Close a sale to authorization: a row that holds nothing, so its request,
    should it still arrive, consumes nothing. `request` is '-' when no request
    was seen; `seq` the record that closed the sale, if any."""
    conn.execute("INSERT INTO authorizations(terminal, sale_id, request, subject, time, state, consumption, seq) "
                 "VALUES (?, ?, ?, ?, ?, 'superseded', '[]', ?)", [terminal, sale_id, request, subject, now, seq])


def settle(conn, rowid: int, state: str, seq: int | None = None) -> None:
    """Move an authorization to `state` (matched, released); `seq`, when
    given, is the record that settled it."""
    if seq is None:
        conn.execute("UPDATE authorizations SET state = ? WHERE id = ?", [state, rowid])
    else:
        conn.execute("UPDATE authorizations SET state = ?, seq = ? WHERE id = ?", [state, seq, rowid])


def stale_holds(conn, before: int) -> list[tuple[int, str, list, str]]:
    """(id, subject, consumption, terminal) of authorizations still held that were given before `before`."""
    return [(rowid, subject, json.loads(consumption), terminal) for rowid, subject, consumption, terminal in
            conn.execute("SELECT id, subject, consumption, terminal FROM authorizations "
                         "WHERE state = 'held' AND time < ?", [before]).fetchall()]


# ---------------------------------------------------------------- counted sales

def sale_recorded(conn, terminal: str, sale_id: str) -> bool:
    return conn.execute("SELECT 1 FROM quota_sales WHERE terminal = ? AND sale_id = ?",
                        [terminal, sale_id]).fetchone() is not None


def sale(conn, terminal: str, seq: int) -> Sale | None:
    """What the ledger holds of the sale record (terminal, seq): counted, or
    only a placeholder left by a void that came first."""
    row = conn.execute("SELECT subject, applied, voided_by, auth FROM quota_sales WHERE terminal = ? AND seq = ?",
                       [terminal, seq]).fetchone()
    return Sale(row[0], json.loads(row[1]), row[2], row[3]) if row else None


def add_sale(conn, terminal: str, seq: int, sale_id: str | None, subject: str, shop: str | None, mode: str | None,
             time: int, auth: int | None, applied: list) -> None:
    conn.execute("INSERT INTO quota_sales(terminal, seq, sale_id, subject, shop, mode, time, auth, applied) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 [terminal, seq, sale_id, subject, shop, mode, time, auth, json.dumps(applied)])


def fill_placeholder(conn, terminal: str, seq: int, sale_id: str | None, shop: str | None, mode: str | None,
                     time: int, auth: int | None) -> None:
    """The sale a void overtook has arrived: its row gets the sale's details and counts nothing."""
    conn.execute("UPDATE quota_sales SET sale_id = ?, shop = ?, mode = ?, time = ?, auth = ?, applied = '[]' "
                 "WHERE terminal = ? AND seq = ?", [sale_id, shop, mode, time, auth, terminal, seq])


def add_placeholder(conn, terminal: str, seq: int, subject: str | None, voided_by: int) -> None:
    """A void overtook its sale (a re-sent batch): the sale's row, voided
    already, so the sale counts nothing when it arrives."""
    conn.execute("INSERT INTO quota_sales(terminal, seq, subject, applied, voided_by) VALUES (?, ?, ?, '[]', ?)",
                 [terminal, seq, subject, voided_by])


def mark_voided(conn, terminal: str, seq: int, voided_by: int) -> None:
    conn.execute("UPDATE quota_sales SET voided_by = ? WHERE terminal = ? AND seq = ?", [voided_by, terminal, seq])


def live_sales(conn, subject: str) -> list[tuple[str, int, str | None, str | None, list]]:
    """(terminal, seq, shop, mode, applied) of a subject's sales not voided, oldest first."""
    return [(terminal, seq, shop, mode, json.loads(applied)) for terminal, seq, shop, mode, applied in conn.execute(
        "SELECT terminal, seq, shop, mode, applied FROM quota_sales WHERE subject = ? AND voided_by IS NULL "
        "ORDER BY time", [subject]).fetchall()]
