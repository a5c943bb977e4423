"""The inspection queue and the watch list (issue 18, item 6): the rules'
severity first, then the deadline; rankings and fleet health on the watch
list unless the rules file says otherwise; repeated findings of one kind
from one terminal as one row; numbered pages; hostile paging refused."""

import sqlite3

import pytest
from fastapi.testclient import TestClient

from gateway.api import create_app
from gateway.supervision.rules import config
from tests.support.api_world import HOUR, PASSWORD, T0, add_queue_findings, build, copy_of

NOW = T0 + 300_000


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The API world (banned sales at SHOP1 and SHOP3) and the findings of
    `add_queue_findings`."""
    db = build(tmp_path_factory.mktemp("queue-template"), {"now": T0})
    add_queue_findings(db)
    return db


def client_for(template, tmp_path, rules=None):
    db = copy_of(template, tmp_path / "world")
    app = create_app(db, clock=lambda: NOW, photos_dir=tmp_path / "photos", session_clock=lambda: NOW,
                     rules_cfg=config.load(overrides=rules) if rules else None)
    return TestClient(app), db


def login(client, name):
    r = client.post("/api/login", json={"name": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    client.cookies.clear()
    return {"Authorization": "Bearer " + r.json()["token"]}


def test_queue_puts_the_most_severe_first_then_the_nearest_deadline(template, tmp_path):
    client, _ = client_for(template, tmp_path)
    with client:
        q = client.get("/api/queue", headers=login(client, "d1")).json()
    got = [(c["severity"], c["codes"]) for c in q["cases"]]
    # the shared card's case is severity 1 with the earliest deadline; the two banned sales follow;
    # the override rate (3) after them; the watch-only cases (clock skew, top buyer) not at all
    assert got[0] == (1, "card_travel_impossible")
    assert [s for s, _ in got] == sorted(s for s, _ in got)
    assert {c for _, c in got} == {"card_travel_impossible", "banned_product_sold", "override_rate_high"}
    assert q["total"] == len(got) == 4
    deadlines = [c["deadline"] for c in q["cases"] if c["severity"] == 1]
    assert deadlines == sorted(deadlines)


def test_watch_list_groups_repeated_findings_of_one_terminal(template, tmp_path):
    client, _ = client_for(template, tmp_path)
    with client:
        headers = login(client, "d1")
        watch = client.get("/api/violations/groups?list=watch", headers=headers).json()
        queue = client.get("/api/violations/groups", headers=headers).json()
    skew = [g for g in watch["groups"] if g["code"] == "clock_skew"]
    assert len(skew) == 1 and skew[0]["n"] == 3 and skew[0]["terminal"] == "TD"
    assert (skew[0]["first_time"], skew[0]["last_time"]) == (T0, T0 + 2 * HOUR)
    assert skew[0]["detail"]["seconds"] == 402                 # the latest one's
    assert skew[0]["sentence"]["zh"] == "终端时钟快 402 秒：记录时间 2025-06-01 13:06，收到时间 2025-06-01 13:00"
    assert {g["code"] for g in watch["groups"]} == {"clock_skew", "top_buyer"}
    assert all(g["severity"] == 4 for g in watch["groups"])
    codes = [g["code"] for g in queue["groups"]]
    assert "clock_skew" not in codes and "top_buyer" not in codes
    assert codes[-1] == "override_rate_high" and set(codes[:-1]) == {"banned_product_sold", "card_travel_impossible"}


def test_rules_file_can_send_watch_findings_to_the_queue_and_reorder_it(tmp_path):
    rules = {"queue": {"watch": []}, "severity": {"override_rate_high": 1, "banned_product_sold": 2}}
    template = build(tmp_path / "template", {"now": T0})
    add_queue_findings(template, config.load(overrides=rules))   # filed under that rules file: they open cases
    client, _ = client_for(template, tmp_path, rules=rules)
    with client:
        headers = login(client, "d1")
        q = client.get("/api/queue", headers=headers).json()
        watch = client.get("/api/violations/groups?list=watch", headers=headers).json()
    codes = [c["codes"] for c in q["cases"]]
    assert codes[:4] == ["card_travel_impossible", "override_rate_high", "banned_product_sold", "banned_product_sold"]
    assert sorted(codes[4:]) == ["clock_skew", "top_buyer"]
    assert watch == {"groups": [], "total": 0, "page": 1, "per_page": 20}


def test_watch_findings_open_no_case_yet_are_on_the_watch_list_by_their_shop(template, tmp_path):
    """Rankings and fleet health are for the office: no case is opened for
    them (cases.file_new_violations); the watch list finds them through their
    shop (a fleet-health finding through its terminal's) and keeps the area."""
    client, db = client_for(template, tmp_path)
    conn = sqlite3.connect(db)
    codes = {c for (c,) in conn.execute("SELECT codes FROM cases")}
    conn.close()
    assert not codes & {"clock_skew", "top_buyer"}
    with client:
        d1 = client.get("/api/violations/groups?list=watch", headers=login(client, "d1")).json()
        t1 = client.get("/api/violations/groups?list=watch", headers=login(client, "t1")).json()
        t2 = client.get("/api/violations/groups?list=watch", headers=login(client, "t2")).json()
        shop4 = client.get("/api/violations/groups?list=watch&shop=SHOP4", headers=login(client, "d1")).json()
    assert {(g["code"], g["shop"], g["case_id"]) for g in d1["groups"]} == {("clock_skew", "SHOP4", None),
                                                                            ("top_buyer", "SHOP2", None)}
    assert [g["code"] for g in t1["groups"]] == ["top_buyer"] and [g["code"] for g in t2["groups"]] == ["clock_skew"]
    assert [(g["code"], g["n"]) for g in shop4["groups"]] == [("clock_skew", 3)]


def test_queue_and_groups_are_paged(template, tmp_path):
    client, _ = client_for(template, tmp_path)
    with client:
        headers = login(client, "d1")
        whole = client.get("/api/queue", headers=headers).json()["cases"]
        pages = [client.get(f"/api/queue?per_page=3&page={n}", headers=headers).json() for n in (1, 2, 3)]
        groups = [client.get(f"/api/violations/groups?list=watch&per_page=1&page={n}", headers=headers).json()
                  for n in (1, 2)]
    assert [c["id"] for p in pages for c in p["cases"]] == [c["id"] for c in whole]
    assert [len(p["cases"]) for p in pages] == [3, 1, 0] and all(p["total"] == 4 for p in pages)
    assert [g["groups"][0]["code"] for g in groups] == ["clock_skew", "top_buyer"]  # same severity: latest first
    assert groups[0]["total"] == 2


def test_queue_shows_a_village_only_its_village(template, tmp_path):
    client, _ = client_for(template, tmp_path)
    with client:
        headers = login(client, "v3")
        q = client.get("/api/queue", headers=headers).json()
        groups = client.get("/api/violations/groups", headers=headers).json()
        other = client.get("/api/queue?town=330113001", headers=headers)
    assert {c["shop"] for c in q["cases"]} == {"SHOP3"}
    assert {g["shop"] for g in groups["groups"]} == {"SHOP3"}
    assert other.status_code == 403


@pytest.mark.parametrize("query", ["page=0", "page=-1", "page=abc", "per_page=0", "per_page=101", "page=10001",
                                   "list=bogus", "state=everything", "code=' OR 1=1 --", "sort=id"])
def test_hostile_paging_is_refused_and_changes_nothing(template, tmp_path, query):
    client, db = client_for(template, tmp_path)

    def snapshot():
        conn = sqlite3.connect(db)
        try:
            return [conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                    for t in ("cases", "case_events", "violations", "case_violations")]
        finally:
            conn.close()

    before = snapshot()
    with client:
        headers = login(client, "d1")
        path = "/api/violations/groups" if query.startswith("list") else "/api/queue"
        r = client.get(f"{path}?{query}", headers=headers)
    assert r.status_code == 422 and r.json()["code"] == "invalid_input"
    assert snapshot() == before


@pytest.mark.parametrize("rules, message", [({"severity": {"banned_sold": 1}}, "unknown violation code severity.banned_sold"),
                                            ({"severity": {"top_buyer": 0}}, "severity.top_buyer must be 1, 2, 3 or 4"),
                                            ({"queue": {"watch": ["top_buyers"]}}, "queue.watch must be a list of")])
def test_a_bad_severity_or_watch_list_in_the_rules_file_names_the_key(rules, message):
    with pytest.raises(config.ConfigError, match=message):
        config.load(overrides=rules)


def test_ledger_purchases_and_terminals_are_paged(template, tmp_path):
    client, _ = client_for(template, tmp_path)
    with client:
        headers = login(client, "d1")
        whole = client.get("/api/shops/SHOP1?per_page=100", headers=headers).json()
        parts = [client.get(f"/api/shops/SHOP1?per_page=2&page={n}", headers=headers).json() for n in (1, 2)]
        purchases = [client.get(f"/api/subjects/S00001?per_page=1&page={n}", headers=headers).json() for n in (1, 2)]
        terminals = [client.get(f"/api/terminals?per_page=3&page={n}", headers=headers).json() for n in (1, 2)]
        refused = [client.get(path, headers=headers).status_code for path in (
            "/api/shops/SHOP1?page=0", "/api/subjects/S00001?per_page=500", "/api/terminals?page=x")]
    assert [(r["terminal"], r["seq"]) for p in parts for r in p["ledger"]] == \
        [(r["terminal"], r["seq"]) for r in whole["ledger"]] and len(whole["ledger"]) == 3
    assert [p["ledger_page"] for p in parts] == [{"total": 3, "page": n, "per_page": 2} for n in (1, 2)]
    assert [p["purchases"][0]["seq"] for p in purchases] == [2, 1]
    assert purchases[0]["purchases_page"]["total"] == 2
    assert [t["id"] for p in terminals for t in p["terminals"]] == ["TA", "TB", "TC", "TD"]
    assert terminals[0]["total"] == 4 and terminals[0]["now"] == NOW
    assert refused == [422, 422, 422]


def test_overview_counts_open_cases_as_the_queue_does(template, tmp_path):
    client, _ = client_for(template, tmp_path)
    with client:
        headers = login(client, "d1")
        overview = client.get("/api/overview", headers=headers).json()
        queue = client.get("/api/queue", headers=headers).json()
    assert overview["totals"]["open_cases"] == queue["total"] == 4     # not the clock-skew or top-buyer cases
