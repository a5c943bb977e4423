"""The cases repository: the closed loop's rows. `cases` (one a shop and
subject while open), `case_events` (the timeline, which is the audit: every
change writes one in the same transaction), `case_violations` (which findings
a case answers), `case_photos`, `case_proposals` (a close awaiting a second
person) and `credit_grades` (the subjects graded below A).

What may happen to a case, who may do it and when are the supervision's
(gateway/supervision/cases.py); these functions only read and write the rows,
inside the caller's transaction.
"""

from __future__ import annotations

import json

from gateway.store.dialect import json_values

COLUMNS = ("id", "opened", "updated", "state", "shop", "subject", "terminal", "village", "town", "district",
           "level", "assignee", "deadline", "codes", "violations", "result", "outcome", "closed")
EVENT_COLUMNS = ("id", "time", "actor", "action", "from_state", "to_state", "detail")
PROPOSAL_COLUMNS = ("outcome", "actor", "role", "time", "notes")
# the outcomes that count against a subject's credit, in the statements below
_COUNTED = "outcome IN ('confirmed', 'penalised') AND closed >= ?"


# -- cases

def get(conn, case_id: int) -> dict | None:
    row = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM cases WHERE id=?", [case_id]).fetchone()
    return dict(zip(COLUMNS, row)) if row else None


def open_case_of(conn, shop: str | None, subject: str | None) -> tuple[int, str] | None:
    """(id, codes) of the case still open for this shop and subject, if any."""
    return conn.execute("SELECT id, codes FROM cases WHERE shop IS NOT DISTINCT FROM ? "
                        "AND subject IS NOT DISTINCT FROM ? AND state != 'closed' "
                        "ORDER BY id LIMIT 1", [shop, subject]).fetchone()


def insert(conn, now: int, shop: str | None, subject: str | None, terminal: str | None, village: str | None,
           town: str | None, district: str | None, level: str, deadline: int, code: str) -> int:
    """A new open case for one violation; returns its id."""
    return conn.execute(
        "INSERT INTO cases(opened, updated, state, shop, subject, terminal, village, town, district, level, "
        "assignee, deadline, codes, violations) VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, 1) "
        "RETURNING id",
        [now, now, shop, subject, terminal, village, town, district, level, deadline, code]).fetchone()[0]


def add_violation(conn, case_id: int, codes: str, now: int) -> None:
    """One more violation joined the case; `codes`: all its codes now, comma-separated."""
    conn.execute("UPDATE cases SET codes=?, violations=violations+1, updated=? WHERE id=?", [codes, now, case_id])


def link_violation(conn, violation_id: int, case_id: int) -> None:
    conn.execute("INSERT INTO case_violations(violation, case_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                 [violation_id, case_id])


def assign(conn, case_id: int, assignee: str, now: int) -> None:
    conn.execute("UPDATE cases SET state='assigned', assignee=?, updated=? WHERE id=?", [assignee, now, case_id])


def past_deadline_below_district(conn, now: int) -> list[int]:
    """Cases not inspected by their deadline that can still move up the grid."""
    return [r[0] for r in conn.execute("SELECT id FROM cases WHERE state IN ('open', 'assigned') AND deadline < ? "
                                       "AND level != 'district'", [now]).fetchall()]


def past_deadline_at_district(conn, now: int, limit: int) -> list[int]:
    """Cases not inspected by their deadline at the district, where nothing escalates further."""
    return [r[0] for r in conn.execute("SELECT id FROM cases WHERE level = 'district' AND state IN "
                                       "('open', 'assigned') AND deadline < ? ORDER BY id LIMIT ?",
                                       [now, limit]).fetchall()]


def move_level(conn, case_id: int, now: int, level: str, assignee: str | None, state: str, deadline: int) -> None:
    conn.execute("UPDATE cases SET level=?, assignee=?, state=?, deadline=?, updated=? WHERE id=?",
                 [level, assignee, state, deadline, now, case_id])


def set_inspected(conn, case_id: int, result: str, now: int) -> None:
    conn.execute("UPDATE cases SET state='inspected', result=?, updated=? WHERE id=?", [result, now, case_id])


def touch(conn, case_id: int, now: int) -> None:
    conn.execute("UPDATE cases SET updated=? WHERE id=?", [now, case_id])


def set_closed(conn, case_id: int, outcome: str, now: int) -> None:
    conn.execute("UPDATE cases SET state='closed', outcome=?, closed=?, updated=? WHERE id=?",
                 [outcome, now, now, case_id])


def add_photo(conn, case_id: int, now: int, actor: str, mime: str, size: int, sha256: str, path: str) -> int:
    return conn.execute("INSERT INTO case_photos(case_id, time, actor, mime, size, sha256, path) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                        [case_id, now, actor, mime, size, sha256, path]).fetchone()[0]


def findings(conn, case_id: int) -> list[tuple]:
    """(time, code, terminal, seq) of the violations a case answers, oldest first."""
    return conn.execute(
        "SELECT v.time, v.code, v.terminal, v.seq FROM case_violations cv JOIN violations v ON v.id = cv.violation "
        "WHERE cv.case_id = ? ORDER BY v.time, v.id", [case_id]).fetchall()


# -- the timeline

def add_event(conn, case_id: int, now: int, actor: str, action: str, old: str | None, new: str | None,
              detail: dict | None = None) -> None:
    conn.execute("INSERT INTO case_events(case_id, time, actor, action, from_state, to_state, detail) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)",
                 [case_id, now, actor, action, old, new, json.dumps(detail or {}, ensure_ascii=False)])


def timeline(conn, case_id: int) -> list[dict]:
    out = []
    for r in conn.execute("SELECT id, time, actor, action, from_state, to_state, detail FROM case_events "
                          "WHERE case_id=? ORDER BY id", [case_id]):
        item = dict(zip(EVENT_COLUMNS, r))
        item["detail"] = json.loads(item["detail"])
        out.append(item)
    return out


def handover_events(conn, after: int, limit: int) -> list[dict]:
    """{id, case_id, action, detail} of the events above `after` that put a
    case in someone's hands (opened, assigned, escalated), oldest first."""
    rows = conn.execute("SELECT id, case_id, action, detail FROM case_events WHERE id > ? "
                        "AND action IN ('opened', 'assigned', 'escalated') ORDER BY id LIMIT ?",
                        [after, limit]).fetchall()
    return [{"id": r[0], "case_id": r[1], "action": r[2], "detail": json.loads(r[3] or "{}")} for r in rows]


def was_assigned(conn, case_id: int) -> bool:
    return conn.execute("SELECT 1 FROM case_events WHERE case_id = ? AND action = "
                        "'assigned' LIMIT 1", [case_id]).fetchone() is not None


# -- a close awaiting a second person

def proposal(conn, case_id: int) -> dict | None:
    """The close awaiting a second person, if any."""
    row = conn.execute("SELECT outcome, actor, role, time, notes FROM case_proposals WHERE case_id=?",
                       [case_id]).fetchone()
    return dict(zip(PROPOSAL_COLUMNS, row)) if row else None


def propose(conn, case_id: int, now: int, outcome: str, actor: str, role: str, notes: str) -> None:
    conn.execute("INSERT INTO case_proposals(case_id, outcome, actor, role, time, notes) VALUES (?, ?, ?, ?, ?, ?) "
                 "ON CONFLICT(case_id) DO UPDATE SET outcome=excluded.outcome, actor=excluded.actor, "
                 "role=excluded.role, time=excluded.time, notes=excluded.notes",
                 [case_id, outcome, actor, role, now, notes])


def drop_proposal(conn, case_id: int) -> None:
    conn.execute("DELETE FROM case_proposals WHERE case_id=?", [case_id])


# -- credit grades

def count_against(conn, subject: str, since: int) -> int:
    """The subject's cases closed confirmed or penalised since `since`."""
    return conn.execute(f"SELECT count(*) FROM cases WHERE subject=? AND {_COUNTED}", [subject, since]).fetchone()[0]


def counts_against(conn, since: int, subjects: list[str] | None = None) -> dict[str, int]:
    """`count_against` per subject, for these subjects or all that have any."""
    if subjects is None:
        return dict(conn.execute(f"SELECT subject, count(*) FROM cases WHERE {_COUNTED} AND subject IS NOT NULL "
                                 "GROUP BY subject", [since]))
    return dict(conn.execute(f"SELECT subject, count(*) FROM cases WHERE {_COUNTED} "
                             f"AND subject IN ({json_values(conn)}) GROUP BY subject",
                             [since, json.dumps(sorted(set(subjects)))]))


def grades(conn, subjects: list[str] | None = None) -> dict[str, str]:
    """The grades kept (below A), of these subjects or of all."""
    if subjects is None:
        return dict(conn.execute("SELECT subject, grade FROM credit_grades"))
    return dict(conn.execute(f"SELECT subject, grade FROM credit_grades WHERE subject IN ({json_values(conn)})",
                             [json.dumps(sorted(set(subjects)))]))


def set_grade(conn, subject: str, grade: str, now: int) -> None:
    conn.execute("INSERT INTO credit_grades(subject, grade, updated) VALUES (?, ?, ?) "
                 "ON CONFLICT(subject) DO UPDATE SET grade=excluded.grade, updated=excluded.updated",
                 [subject, grade, now])


def clear_grade(conn, subject: str) -> None:
    conn.execute("DELETE FROM credit_grades WHERE subject=?", [subject])
