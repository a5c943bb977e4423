"""The faces repository: each enrolled subject's encodings, stored as the
float32 little-endian rows the gallery payload carries (protocols/facegallery.py),
so a gallery is built by joining blobs. Never photos. What may be imported,
and what a shop's gallery holds, is decided in gateway/enforcement/faces.py.

Every change is one new faces revision (`faces_rev` in quota_meta), stored
on the rows it changed: a gallery's version is derived from the (subject,
revision) pairs it holds.
"""

from __future__ import annotations

import json

from gateway.store.dialect import json_values


def bump_rev(conn) -> int:
    """A new faces revision, inside the caller's transaction."""
    return conn.execute("UPDATE quota_meta SET value = value + 1 WHERE key = 'faces_rev' RETURNING value").fetchone()[0]


def put(conn, subject: str, model: str, count: int, encodings: bytes, rev: int, now_ms: int) -> None:
    """Replace a subject's encodings (`count` rows in `encodings`)."""
    conn.execute(
        "INSERT INTO faces(subject, model, count, encodings, rev, updated) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(subject) DO UPDATE SET model = excluded.model, count = excluded.count, "
        "encodings = excluded.encodings, rev = excluded.rev, updated = excluded.updated",
        [subject, model, count, encodings, rev, now_ms])


def delete(conn, subjects: list[str]) -> int:
    """Forget subjects' encodings; returns how many were enrolled."""
    return conn.execute(f"DELETE FROM faces WHERE subject IN ({json_values(conn)})",
                        [json.dumps(subjects)]).rowcount


def is_enrolled(conn, subject: str) -> bool:
    return conn.execute("SELECT 1 FROM faces WHERE subject = ?", [subject]).fetchone() is not None


def all_encodings(conn) -> list[tuple[str, bytes]]:
    """(subject, encodings) of every enrolled subject."""
    return conn.execute("SELECT subject, encodings FROM faces").fetchall()


def revisions(conn, subjects: list[str]) -> list[tuple[str, int]]:
    """(subject, revision) of those of `subjects` enrolled, by subject."""
    return conn.execute(f"SELECT subject, rev FROM faces WHERE subject IN ({json_values(conn)}) "
                        "ORDER BY subject", [json.dumps(subjects)]).fetchall()


def encodings_of(conn, subjects: list[str]) -> list[tuple[str, bytes, int]]:
    """(subject, encodings, updated) of those of `subjects` enrolled, by subject."""
    return conn.execute(f"SELECT subject, encodings, updated FROM faces WHERE subject IN ({json_values(conn)}) "
                        "ORDER BY subject", [json.dumps(subjects)]).fetchall()


def enrolled(conn) -> list[dict]:
    """Every enrolled subject: its number of encodings, revision and time of enrollment."""
    return [{"subject": s, "encodings": c, "rev": r, "updated": u} for s, c, r, u in conn.execute(
        "SELECT subject, count, rev, updated FROM faces ORDER BY subject")]
