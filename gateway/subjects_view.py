"""Read-only, defensive view of the subjects registry.

The registry itself (`python -m gateway subjects import`, with plots, permits,
allowances and ID numbers) belongs to the quota ledger's work; supervision only
reads it. Until it exists, or if its shape differs from what is expected here,
every read answers "registry unknown" instead of failing, so the rules that
need it (permits, allowances) stay quiet rather than raising false violations.

Accepted shapes: a table `subjects` with an `id` column and either one JSON
column (`data`, `record`, `json`, `body` or `info`) holding the subject object
as `protocols.policy` reads it, or plain columns that are used as they are.
"""

from __future__ import annotations

import json
import logging
import sqlite3

log = logging.getLogger(__name__)

JSON_COLUMNS = ("data", "record", "json", "body", "info")
ID_FIELDS = ("id_number", "id_no", "idcard", "id_card", "credit_code", "uscc")


def registry_known(conn: sqlite3.Connection) -> bool:
    try:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='subjects'").fetchone() is not None
    except sqlite3.Error:
        return False


def _columns(conn) -> list[str]:
    return [r[1] for r in conn.execute("PRAGMA table_info(subjects)")]


def lookup(conn: sqlite3.Connection, subject_id: str | None) -> dict | None:
    """The subject as a dict, or None (unknown subject, or no registry)."""
    if not subject_id:
        return None
    return lookup_many(conn, [subject_id]).get(subject_id)


def lookup_many(conn: sqlite3.Connection, subject_ids) -> dict[str, dict]:
    """{id: subject} for those of `subject_ids` the registry knows, in one
    query (a month's buyers for the ranking are thousands)."""
    wanted = sorted({i for i in subject_ids if i})
    if not wanted or not registry_known(conn):
        return {}
    try:
        cols = _columns(conn)
        key = "id" if "id" in cols else ("subject" if "subject" in cols else None)
        if key is None:
            return {}
        rows = conn.execute(f"SELECT * FROM subjects WHERE {key} IN (SELECT value FROM json_each(?))",
                            [json.dumps(wanted)]).fetchall()
    except sqlite3.Error as err:
        log.debug("subjects registry not readable: %s", err)
        return {}
    at = cols.index(key)
    out = {}
    for row in rows:
        entry = _entry(dict(zip(cols, row)))
        entry.setdefault("id", row[at])
        out[str(row[at])] = entry
    return out


def _entry(out: dict) -> dict:
    """A registry row as the subject object: a JSON column merged in, JSON
    text fields parsed."""
    for name in JSON_COLUMNS:
        if name in out and isinstance(out[name], str):
            try:
                parsed = json.loads(out[name])
            except ValueError:
                continue
            if isinstance(parsed, dict):
                merged = {k: v for k, v in out.items() if k != name}
                merged.update(parsed)
                out = merged
                break
    for name in ("plots", "permits", "allowances"):
        if isinstance(out.get(name), str):
            try:
                out[name] = json.loads(out[name])
            except ValueError:
                pass
    return out


def group_of(conn: sqlite3.Connection, subject_id: str | None) -> str | None:
    """The subject's buying group (household, cooperative) from the registry,
    or None: no subject, no registry, no group, or a value that is not an id
    (an id only, so it is safe to use as a key and to show)."""
    from protocols.schema import is_id

    entry = lookup(conn, subject_id)
    group = entry.get("group") if entry else None
    return group if is_id(group) else None


def mask_id_number(value) -> str:
    """Keep the first 3 and last 2 characters: enough for a clerk to confirm a
    card on the phone, useless for anyone copying it (PIPL data minimisation)."""
    text = str(value or "")
    if len(text) <= 5:
        return "*" * len(text)
    return text[:3] + "*" * (len(text) - 5) + text[-2:]


def public(subject: dict | None) -> dict | None:
    """The subject with every ID number masked; what leaves the gateway."""
    if subject is None:
        return None
    out = {}
    for key, value in subject.items():
        if key in ID_FIELDS or key.endswith("_id_number"):
            out[key] = mask_id_number(value)
        elif key in ("embedding", "face", "faces", "key"):
            continue
        else:
            out[key] = value
    return out
