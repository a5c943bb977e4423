"""The fleet repository: the terminals as supervision sees them (their shop,
their health and backlog samples), their last reported status and versions (`terminal_status`,
kept by gateway/supervision/fleet_status.py), and what the config push reads
to decide what each terminal lacks (gateway/enforcement/configpush.py): the
stored sections and their versions, and the scope's subjects and balances.
Writes of the terminals' ingest state (watermarks, online/offline) are
ingest's (gateway/ingest/writer.py)."""

from __future__ import annotations

import json

from gateway.store.dialect import json_values


# -- the terminals

def terminal_shop(conn, terminal: str) -> str | None:
    row = conn.execute("SELECT shop FROM terminals WHERE id=?", [terminal]).fetchone()
    return row[0] if row else None


def acked_upto(conn, terminal: str) -> int:
    """The terminal's cumulative ack (0 for a terminal not provisioned)."""
    row = conn.execute("SELECT acked_upto FROM terminals WHERE id = ?", [terminal]).fetchone()
    return row[0] if row else 0



def shops_by_terminal(conn) -> dict[str, str | None]:
    return dict(conn.execute("SELECT id, shop FROM terminals"))


HEALTH_FIELDS = ("id", "shop", "last_seen", "head", "acked_upto")


def terminals_health(conn) -> list[dict]:
    """Every terminal with what its health is judged on: when it was last
    seen, its ledger's head and what the gateway has acknowledged of it."""
    return [dict(zip(HEALTH_FIELDS, r)) for r in
            conn.execute("SELECT id, shop, last_seen, head, acked_upto FROM terminals")]


# -- the backlog samples (unacknowledged records over time)

def sample_backlog(conn, terminal: str, now: int, backlog: int) -> None:
    conn.execute("INSERT INTO terminal_samples(terminal, time, backlog) VALUES (?, ?, ?) "
                 "ON CONFLICT(terminal, time) DO UPDATE SET backlog = excluded.backlog",
                 [terminal, now, backlog])


def prune_samples(conn, before: int) -> None:
    conn.execute("DELETE FROM terminal_samples WHERE time < ?", [before])


def backlog_samples(conn, since: int) -> list[tuple]:
    """(terminal, time, backlog) since `since`, by terminal and time."""
    return conn.execute("SELECT terminal, time, backlog FROM terminal_samples "
                        "WHERE time >= ? ORDER BY terminal, time", [since]).fetchall()

# -- the statuses they report

def save_status(conn, terminal: str, state: str, status_time: int | None, received: int, skew_ms: int | None,
                versions: dict | None) -> None:
    """The terminal's last status; a status without a time, a skew or
    versions keeps the ones stored before."""
    conn.execute(
        "INSERT INTO terminal_status(terminal, state, status_time, received, skew_ms, versions) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(terminal) DO UPDATE SET state=excluded.state, "
        "status_time=coalesce(excluded.status_time, terminal_status.status_time), "
        "received=excluded.received, skew_ms=coalesce(excluded.skew_ms, terminal_status.skew_ms), "
        "versions=coalesce(excluded.versions, terminal_status.versions)",
        [terminal, state, status_time, received, skew_ms, json.dumps(versions, sort_keys=True) if versions else None])


def online_versions(conn) -> dict[str, dict | None]:
    """Every terminal online anywhere in the fleet (`terminals.state`, kept by
    every worker's ingest), with the versions its last status reported (None
    when none did)."""
    return {terminal: json.loads(versions) if versions else None for terminal, versions in conn.execute(
        "SELECT t.id, s.versions FROM terminals t LEFT JOIN terminal_status s ON s.terminal = t.id "
        "WHERE t.state = 'online'")}


# -- what the config push reads

def section_content(conn, name: str, version: int) -> str | None:
    """The stored text of a section at that version; None once it moved on."""
    row = conn.execute("SELECT content FROM config_sections WHERE name = ? AND version = ?",
                       [name, version]).fetchone()
    return row[0] if row else None


def section_texts(conn, names: tuple[str, ...]) -> dict[str, str]:
    """{name: stored text} of the current version of these sections, where stored."""
    return dict(conn.execute(f"SELECT name, content FROM config_sections WHERE name IN ({', '.join('?' * len(names))})",
                             list(names)))


def scope_revisions(conn) -> list[tuple[str, int]]:
    """(key, value) of the subjects' and the faces' revisions, by key."""
    return conn.execute("SELECT key, value FROM quota_meta WHERE key IN ('subjects_rev', 'faces_rev') "
                        "ORDER BY key").fetchall()


def balances_rev(conn, scope_json: str) -> int:
    """The newest balance revision among the subjects of a scope, given as a
    JSON array (the caller keeps it built): the `balances` section's version."""
    row = conn.execute(f"SELECT max(rev) FROM quota_used WHERE subject IN ({json_values(conn)})",
                       [scope_json]).fetchone()
    return row[0] or 0


def balances(conn, subjects: list[str]) -> list[tuple]:
    """(subject, category, period, used) of every balance of these subjects."""
    return conn.execute("SELECT subject, category, period, used FROM quota_used "
                        f"WHERE subject IN ({json_values(conn)})", [json.dumps(subjects)]).fetchall()


def subject_entries(conn, subjects: list[str]) -> list[dict]:
    """The registry entries of these subjects, by id."""
    return [json.loads(data) for (data,) in conn.execute(
        f"SELECT data FROM subjects WHERE id IN ({json_values(conn)}) ORDER BY id", [json.dumps(subjects)])]
