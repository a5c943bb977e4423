"""The overview's open-case count (gateway/api/queries.py overview_counts)
on both backends: per town for a district user, per village for a town user,
the cases not closed that hold a finding for inspectors, read from the index
of open cases (migration 7, `cases_open`) alone rather than from every case
the district ever opened (10 million records a year: 200,000 cases,
bench/bench_dashboard.py)."""

from __future__ import annotations

import pytest

from gateway.api import queries
from gateway.store import connect
from gateway.store.users import User
from gateway.supervision import grid
from gateway.supervision.rules import config
from tests.support.store_backends import backend_db  # noqa: F401 - a fixture

CFG = config.load()
DISTRICT, TOWN = User(1, "d", "district", "D1"), User(2, "t", "town", "D1T01")
WATCH = CFG["queue"]["watch"][0]
DAY = "2025-06-01"


class Recording:
    """The store's connection, keeping each statement run through it."""

    def __init__(self, conn):
        self.conn, self.statements = conn, []

    def execute(self, sql, params=()):
        self.statements.append((sql, list(params)))
        return self.conn.execute(sql, params)


@pytest.fixture
def conn(backend_db):
    conn = connect(backend_db)
    areas = [{"code": "D1", "level": "district", "name": "区"}]
    for t in range(3):
        areas.append({"code": f"D1T{t:02d}", "level": "town", "name": f"镇{t}", "parent": "D1"})
        for v in range(2):
            areas.append({"code": f"D1T{t:02d}V{v:02d}", "level": "village", "name": f"村{t}{v}",
                          "parent": f"D1T{t:02d}"})
    grid.import_grid(conn, {"areas": areas, "shops": []})
    yield conn
    conn.close()


def add_cases(conn, cases: list[tuple]) -> None:
    """(village, state, codes) each; ids in order from 1."""
    conn.executemany("INSERT INTO cases(id, opened, updated, state, shop, village, town, district, level, codes) "
                     "VALUES (?, 0, 0, ?, 'SHOP', ?, ?, 'D1', 'village', ?)",
                     [(i, state, village, village[:5], codes) for i, (village, state, codes) in enumerate(cases, 1)])


def open_cases(conn, user: User) -> dict:
    group = "town" if user.role == "district" else "village"
    return {g["code"]: g["open_cases"] for g in queries.overview_counts(conn, user, CFG, group, DAY)}


def test_open_cases_are_counted_per_area_without_closed_or_watch_list_only_ones(conn):
    add_cases(conn, [("D1T01V00", "open", "over_quota"), ("D1T01V00", "assigned", f"{WATCH},over_quota"),
                     ("D1T01V01", "inspected", "banned_product_sold"), ("D1T01V01", "closed", "over_quota"),
                     ("D1T01V01", "open", WATCH), ("D1T02V00", "open", "split_purchase")])
    assert open_cases(conn, DISTRICT) == {"D1T01": 3, "D1T02": 1}
    assert open_cases(conn, TOWN) == {"D1T01V00": 2, "D1T01V01": 1}
    conn.execute("UPDATE cases SET state = 'closed' WHERE id = 1")
    conn.execute("UPDATE cases SET state = 'assigned' WHERE id = 4")   # the index follows every move
    assert open_cases(conn, DISTRICT) == {"D1T01": 3, "D1T02": 1}
    assert open_cases(conn, TOWN) == {"D1T01V00": 1, "D1T01V01": 2}


@pytest.mark.parametrize("user", [DISTRICT, TOWN], ids=["district", "town"])
def test_open_cases_are_counted_from_the_open_cases_index_alone(conn, user):
    """A year's cases, nearly all closed: the count reads the index of open
    cases, never the cases table (SQLite: a covering index; PostgreSQL: an
    index-only scan, once vacuumed as autovacuum would)."""
    cases = [(f"D1T{i % 3:02d}V{i % 2:02d}", "open" if i % 20 == 0 else "closed", "over_quota") for i in range(4000)]
    add_cases(conn, cases)
    if conn.dialect == "sqlite":
        conn.execute("ANALYZE")
    else:
        conn.execute("VACUUM ANALYZE cases")
    recording = Recording(conn)
    mine = [state for village, state, _ in cases if user.role == "district" or village.startswith(user.area)]
    assert sum(open_cases(recording, user).values()) == mine.count("open")
    (sql, params), = [s for s in recording.statements if "FROM cases" in s[0]]
    explain = "EXPLAIN QUERY PLAN " if conn.dialect == "sqlite" else "EXPLAIN "
    plan = " ".join(str(part) for row in conn.execute(explain + sql, params) for part in row)
    if conn.dialect == "sqlite":
        assert "USING COVERING INDEX cases_open" in plan, plan
    else:
        assert "Index Only Scan using cases_open" in plan, plan
