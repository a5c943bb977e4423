"""Supervision API: authentication, per-area authorization on every endpoint,
masking and audit of personal data, and hostile input refused with a 4xx that
changes nothing."""

import json
import sqlite3

import pytest
from fastapi import routing
from fastapi.testclient import TestClient

from gateway.api import create_app
from tests.support.api_world import PASSWORD, T0, build, copy_of

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
HOSTILE = ["' OR 1=1 --", "1; DROP TABLE cases", "<script>alert(1)</script>", "\" onmouseover=\"x", "../../etc/passwd",
           "S1' UNION SELECT name, pw FROM users --", "%00", "ｓｅｌｅｃｔ", "a" * 100]
NOT_A_USER = ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eDp5"}, {"Authorization": "Bearer "})


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The populated database, built once through the real ingest and rules.
    No test opens it: each gets a copy (`world`)."""
    return build(tmp_path_factory.mktemp("api-template"), {"now": T0})


@pytest.fixture
def world(template, tmp_path):
    """This test's own copy of the world, behind its own app and client (its own
    login-failure counts too), five minutes after the records arrived."""
    db = copy_of(template, tmp_path / "world")
    clock = {"now": T0 + 300_000}
    app = create_app(db, clock=lambda: clock["now"], photos_dir=tmp_path / "photos", sse_interval=0.05,
                     session_clock=lambda: clock["now"])
    with TestClient(app) as client:
        yield client, db, clock


def token(client, name):
    r = client.post("/api/login", json={"name": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    client.cookies.clear()
    return {"Authorization": "Bearer " + r.json()["token"]}


def snapshot(db):
    conn = sqlite3.connect(db)
    try:
        out = {}
        for table in ("cases", "case_events", "case_photos", "case_violations", "violations", "users", "shops",
                      "areas", "records", "sales", "outbox"):
            out[table] = conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
        return out
    finally:
        conn.close()


def case_of(db, shop):
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT id FROM cases WHERE shop=?", [shop]).fetchone()[0]
    finally:
        conn.close()


def concrete_routes(client, db):
    """Every API route with path parameters filled from the world, routers
    included (FastAPI lists an included router as one entry of `app.routes`)."""
    case_id = case_of(db, "SHOP1")
    values = {"case_id": str(case_id), "photo_id": "1", "subject_id": "S00001", "shop_id": "SHOP1", "reg": "PD20080301"}
    out = []
    for route in routing.iter_route_contexts(client.app.routes):
        path = getattr(route, "path", "")
        if not path.startswith("/api/") or path == "/api/login":
            continue
        for method in sorted(route.methods - {"HEAD"}):
            for key, value in values.items():
                path = path.replace("{" + key + "}", value)
            if path == "/api/records":
                path += "?terminal=TA"
            out.append((method, path))
    return out


def test_every_endpoint_refuses_anonymous_and_bad_tokens(world):
    """401 and nothing else, whatever comes with the request: an empty, an
    invalid or a malformed body, or a query parameter the route does not take,
    is not looked at before the caller is known."""
    client, db, clock = world
    routes = concrete_routes(client, db)
    assert len(routes) >= 20
    json_type = {"Content-Type": "application/json"}
    before = snapshot(db)
    for method, path in routes:
        bogus = path + ("&" if "?" in path else "?") + "bogus=1"
        attempts = [(path, {}), (bogus, {})]
        if method == "POST":
            attempts += [(path, {"content": b"{}", "headers": json_type}),
                         (path, {"content": b'{"result": 1, "extra": [1]}', "headers": json_type}),
                         (path, {"content": b"{not json", "headers": json_type})]
        for headers in NOT_A_USER:
            for url, kwargs in attempts:
                client.cookies.clear()
                # streamed: were the event stream to answer 200, the test fails here instead of hanging
                with client.stream(method, url, **{**kwargs, "headers": {**kwargs.get("headers", {}), **headers}}) as r:
                    assert r.status_code == 401, (method, url, kwargs, headers, r.status_code)
                    assert json.loads(r.read())["code"] == "unauthenticated"
    assert snapshot(db) == before


def test_every_read_endpoint_refuses_out_of_area_access(world):
    client, db, clock = world
    v3 = token(client, "v3")  # Tangqi village: SHOP3 only
    for method, path in concrete_routes(client, db):
        if method != "GET" or path in ("/api/me", "/api/codes", "/api/overview", "/api/stats/daily", "/api/stats/quota",
                                       "/api/violations", "/api/cases", "/api/terminals", "/api/shops",
                                       "/api/upstream", "/api/events", "/api/queue", "/api/violations/groups",
                                       # area-scoped lists (tests/test_api_desk.py), the catalogue every terminal has
                                       "/api/search", "/api/map", "/api/stats/weekly", "/api/products/PD20080301"):
            continue
        r = client.get(path, headers=v3)
        assert r.status_code in (403, 404), (path, r.status_code, r.text[:200])
    assert client.get("/api/cases?town=330113001", headers=v3).status_code == 403
    assert client.get("/api/shops?town=330113001", headers=v3).status_code == 403
    assert client.get("/api/audit", headers=v3).status_code == 403


def test_lists_show_only_the_callers_area(world):
    client, db, clock = world
    seen = {}
    for name in ("d1", "t1", "t2", "v1", "v3"):
        h = token(client, name)
        seen[name] = ({c["shop"] for c in client.get("/api/cases", headers=h).json()["cases"]},
                      {s["id"] for s in client.get("/api/shops", headers=h).json()["shops"]},
                      {t["id"] for t in client.get("/api/terminals", headers=h).json()["terminals"]})
    assert seen["d1"] == ({"SHOP1", "SHOP3"}, {"SHOP1", "SHOP2", "SHOP3", "SHOP4"}, {"TA", "TB", "TC", "TD"})
    assert seen["t1"] == ({"SHOP1"}, {"SHOP1", "SHOP2"}, {"TA", "TB"})
    assert seen["v1"] == ({"SHOP1"}, {"SHOP1"}, {"TA"})
    assert seen["t2"] == seen["v3"][:1] + ({"SHOP3", "SHOP4"}, {"TC", "TD"})
    overview = client.get("/api/overview", headers=token(client, "d1")).json()
    assert {g["code"]: (g["sales"], g["refusals"], g["open_cases"]) for g in overview["groups"]} == {
        "330113001": (2, 1, 1), "330113002": (1, 0, 1)}
    assert overview["yesterday"] == {"day": "2025-05-31", "sales": 0, "refusals": 0, "voids": 0}


def test_subject_page_masks_id_number_and_audits_the_read(world):
    client, db, clock = world
    h = token(client, "t1")
    r = client.get("/api/subjects/S00001", headers=h)
    assert r.status_code == 200
    body = r.json()
    assert body["registry"]["id_number"] == "330*************34" and "199001011234" not in r.text
    assert body["grade"]["grade"] == "A" and body["balance"]["fert_n"]["allowance"] == 150000
    assert [p["seq"] for p in body["purchases"]] == [2, 1]
    assert client.get("/api/subjects/S00003", headers=h).status_code == 404  # bought in another town only
    audit = client.get("/api/audit?target=S00001", headers=token(client, "d1")).json()["entries"]
    assert [(a["user"], a["action"]) for a in audit] == [("t1", "read_subject")]


def test_expired_token_and_wrong_password_are_refused(world):
    client, db, clock = world
    h = token(client, "v1")
    assert client.post("/api/login", json={"name": "v1", "password": "wrong-password"}).status_code == 401
    assert client.get("/api/me", headers=h).status_code == 200
    clock["now"] += 9 * 3600_000
    assert client.get("/api/me", headers=h).status_code == 401


def test_hostile_input_gets_4xx_and_changes_nothing(world):
    client, db, clock = world
    h = token(client, "v1")
    case_id = case_of(db, "SHOP1")
    before = snapshot(db)
    attempts = []
    for s in HOSTILE:
        attempts += [
            ("GET", f"/api/subjects/{s}", None), ("GET", f"/api/shops/{s}", None), ("GET", f"/api/cases?code={s}", None),
            ("GET", f"/api/records?terminal={s}", None), ("GET", f"/api/violations?town={s}", None),
            ("POST", f"/api/cases/{case_id}/inspect", {"result": s}),
            ("POST", f"/api/cases/{case_id}/inspect", {"result": "violation_found", "notes": s + "<b>"}),
            ("POST", f"/api/cases/{case_id}/assign", {"assignee": s}),
            ("POST", f"/api/cases/{case_id}/close", {"outcome": s}),
            ("POST", "/api/login", {"name": s, "password": s}),
        ]
    attempts += [
        ("POST", f"/api/cases/{case_id}/inspect", {"result": 1}),
        ("POST", f"/api/cases/{case_id}/inspect", {"result": ["violation_found"]}),
        ("POST", f"/api/cases/{case_id}/inspect", {"result": "violation_found", "notes": "x" * 3000}),
        ("POST", f"/api/cases/{case_id}/inspect", {"result": "violation_found", "extra": 1}),
        ("POST", f"/api/cases/{case_id}/close", {"outcome": "confirmed"}),  # not inspected yet: 409
        ("POST", "/api/cases/99999999999999999999999/inspect", {"result": "violation_found"}),
        ("POST", "/api/cases/-1/inspect", {"result": "violation_found"}),
        ("GET", "/api/cases?limit=100000", None), ("GET", "/api/cases?before_id=abc", None),
        ("GET", "/api/stats/daily?days=-5", None),
    ]
    for method, path, body in attempts:
        r = client.request(method, path, headers=h, json=body)
        assert 400 <= r.status_code < 500, (method, path, body, r.status_code)
        assert "Traceback" not in r.text and "<script>" not in r.headers.get("content-type", "")
    # oversized bodies, with and without a declared length
    big = b'{"result": "violation_found", "notes": "' + b"x" * 100_000 + b'"}'
    r = client.post(f"/api/cases/{case_id}/inspect", headers={**h, "Content-Type": "application/json"}, content=big)
    assert r.status_code == 413
    r = client.post(f"/api/cases/{case_id}/inspect", headers={**h, "Content-Type": "application/json"},
                    content=iter([big[:50_000], big[50_000:]]))
    assert r.status_code == 413
    r = client.post(f"/api/cases/{case_id}/photos", headers={**h, "Content-Type": "image/svg+xml"},
                    content=b"<svg onload=alert(1)/>")
    assert r.status_code == 415
    r = client.post(f"/api/cases/{case_id}/inspect", headers={**h, "Content-Type": "application/json"},
                    content=b"{not json")
    assert r.status_code == 422
    assert snapshot(db) == before


def test_cookie_alone_cannot_change_a_case(world):
    client, db, clock = world
    r = client.post("/api/login", json={"name": "v1", "password": PASSWORD})
    assert r.status_code == 200 and "agri_token" in client.cookies
    case_id = case_of(db, "SHOP1")
    assert client.get("/api/me").status_code == 200  # cookie works for reads
    before = snapshot(db)
    assert client.post(f"/api/cases/{case_id}/inspect", json={"result": "violation_found"}).status_code == 403
    assert snapshot(db) == before
    client.cookies.clear()


def test_case_flow_through_the_api_changes_the_grade(world):
    client, db, clock = world
    h = token(client, "v3")
    case_id = case_of(db, "SHOP3")
    case = client.get(f"/api/cases/{case_id}", headers=h).json()
    assert case["state"] == "assigned" and case["assignee"] == "v3" and case["codes"] == "banned_product_sold"
    assert case["grade"]["grade"] == "A"
    r = client.post(f"/api/cases/{case_id}/inspect", headers=h,
                    json={"result": "violation_found", "notes": "货架上有甲拌磷 3 瓶"})
    assert r.status_code == 200 and r.json()["state"] == "inspected"
    r = client.post(f"/api/cases/{case_id}/photos", headers={**h, "Content-Type": "image/jpeg"}, content=JPEG)
    assert r.status_code == 200
    photo = client.get(f"/api/cases/{case_id}/photos/{r.json()['id']}", headers=h)
    assert photo.status_code == 200 and photo.content == JPEG
    r = client.post(f"/api/cases/{case_id}/close", headers=h, json={"outcome": "penalised", "notes": "罚款 2000 元"})
    assert r.status_code == 202 and r.json()["state"] == "inspected"        # proposed: a second person confirms
    r = client.post(f"/api/cases/{case_id}/confirm", headers=token(client, "t2"),
                    json={"decision": "confirm", "outcome": "penalised", "notes": "同意"})
    assert r.status_code == 200 and r.json()["outcome"] == "penalised"
    case = client.get(f"/api/cases/{case_id}", headers=h).json()
    assert [e["action"] for e in case["timeline"]] == ["opened", "assigned", "inspected", "photo", "close_proposed",
                                                       "closed"]
    assert case["timeline"][-1]["actor"] == "t2" and case["timeline"][-1]["detail"]["proposed_by"] == "v3"
    assert case["grade"]["grade"] == "B"
    assert client.get("/api/upstream", headers=token(client, "d1")).json()["pending"] >= 1


@pytest.mark.timeout(30)  # a second event that never comes would otherwise wait for the suite's 300 s
def test_event_stream_needs_a_token_and_says_what_changed(world):
    client, db, clock = world
    for headers in NOT_A_USER:
        client.cookies.clear()
        with client.stream("GET", "/api/events", headers=headers) as r:
            assert r.status_code == 401, (headers, r.status_code)
            assert json.loads(r.read())["code"] == "unauthenticated"
    h, v1 = token(client, "d1"), token(client, "v1")
    case_id = case_of(db, "SHOP1")
    with client.stream("GET", "/api/events", headers=h) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = (json.loads(line[len("data:"):]) for line in r.iter_lines() if line.startswith("data:"))
        first = next(events)
        assert sorted(first["changed"]) == ["cases", "fleet", "sales", "upstream", "violations", "watch"]  # all, at first
        inspected = client.post(f"/api/cases/{case_id}/inspect", headers=v1, json={"result": "violation_found"})
        assert inspected.status_code == 200, inspected.text
        after = next(events)
        assert "cases" in after["changed"] and not {"fleet", "sales", "violations"} & set(after["changed"])
        assert after["version"]["cases"] != first["version"]["cases"]


# -- issue 15, items 10, 12, 13, 14

REGISTRY_LINE = {"id": "S00001", "name": "张三", "status": "active", "town": "330113001", "village": "330113001001",
                 "id_card_no": "330113199001011234", "phone": "13812345678", "address": "临平街道东湖村 12 号",
                 "bank_account": "6222020200112233445", "face": [0.1, 0.2],
                 "plots": [{"crop": "rice", "area_cmu": 1000, "owner_id_number": "330113199001011234"}],
                 "permits": [{"ingredients": ["paraquat"], "until": "2026-12-31", "holder_phone": "13812345678",
                              "id": {"holder": {"id_card_no": "330113199001011234"}}}]}


def import_registry_line(db, line=REGISTRY_LINE):
    """A JSON-lines registry import, as `gateway subjects import` runs it."""
    from gateway.enforcement import registry
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        registry.import_subjects(conn, registry.parse_subjects(json.dumps(line, ensure_ascii=False)), T0)
    finally:
        conn.close()


def test_registry_fields_reach_each_role_by_allowlist_and_full_ids_only_district_audited(world):
    """A JSON-lines import may carry any field: town and village users see the
    allowlisted ones, ID numbers and phones masked, nothing else (no address,
    no bank account, nothing nested); the district sees full ID numbers only
    when it asks, and each such read is audited."""
    client, db, clock = world
    import_registry_line(db)
    secrets_ = ("330113199001011234", "199001011234", "13812345678", "12345678", "东湖村 12 号", "6222020200112233445")
    for name in ("t1", "v1"):
        r = client.get("/api/subjects/S00001", headers=token(client, name))
        assert r.status_code == 200, r.text
        registry = r.json()["registry"]
        assert not any(s in r.text for s in secrets_), (name, registry)
        assert registry["id_card_no"] == "330*************34" and registry["phone"] == "138****5678"
        assert set(registry) == {"id", "name", "status", "town", "village", "plots", "permits", "id_card_no", "phone"}
        assert registry["plots"] == [{"crop": "rice", "area_cmu": 1000}]
        assert registry["permits"] == [{"ingredients": ["paraquat"], "until": "2026-12-31"}]
        refused = client.get("/api/subjects/S00001?reveal=true", headers=token(client, name))
        assert refused.status_code == 403 and "330113199001011234" not in refused.text
    d1 = token(client, "d1")
    masked = client.get("/api/subjects/S00001", headers=d1).json()["registry"]
    assert masked["id_card_no"] == "330*************34" and masked["address"] == "临平街道东湖村 12 号"
    assert "bank_account" not in masked and "face" not in masked
    full = client.get("/api/subjects/S00001?reveal=true", headers=d1).json()["registry"]
    assert full["id_card_no"] == "330113199001011234" and "bank_account" not in full
    audit = client.get("/api/audit?target=S00001", headers=d1).json()["entries"]
    assert [(a["user"], a["action"]) for a in audit if a["action"] == "read_id_number"] == [("d1", "read_id_number")]
    assert [a["detail"] for a in audit if a["action"] == "read_id_number"] == ["id_card_no"]


def test_upstream_state_is_for_district_users_only(world):
    client, db, clock = world
    for name in ("t1", "t2", "v1", "v3"):
        r = client.get("/api/upstream", headers=token(client, name))
        assert r.status_code == 403 and r.json()["code"] == "forbidden_role", (name, r.text)
    r = client.get("/api/upstream", headers=token(client, "d1"))
    assert r.status_code == 200 and {"pending", "sent"} <= set(r.json())


def first_version(client, headers):
    """The version a new event stream opens with (its first event)."""
    with client.stream("GET", "/api/events", headers=headers) as r:
        assert r.status_code == 200
        return next(json.loads(line[len("data:"):]) for line in r.iter_lines() if line.startswith("data:"))["version"]


@pytest.mark.timeout(30)
def test_event_stream_counts_only_the_callers_area(world):
    """A town user's stream says nothing about other towns: a change in
    town 1 leaves town 2's version exactly as it was (a stream opened after
    it starts from the same values), a change in town 2 moves it; the
    upstream queue is not in it. The district's stream sees both."""
    client, db, clock = world
    t2, d1, v1, v3 = token(client, "t2"), token(client, "d1"), token(client, "v1"), token(client, "v3")
    before, district_before = first_version(client, t2), first_version(client, d1)
    assert "upstream" not in before and "upstream" in district_before
    r = client.post(f"/api/cases/{case_of(db, 'SHOP1')}/inspect", headers=v1, json={"result": "violation_found"})
    assert r.status_code == 200
    assert first_version(client, t2) == before                                 # town 1's change: nothing to town 2
    assert first_version(client, d1)["cases"] != district_before["cases"]
    r = client.post(f"/api/cases/{case_of(db, 'SHOP3')}/inspect", headers=v3, json={"result": "violation_found"})
    assert r.status_code == 200
    after = first_version(client, t2)
    assert after["cases"] != before["cases"] and {k: v for k, v in after.items() if k != "cases"} == {
        k: v for k, v in before.items() if k != "cases"}


@pytest.mark.timeout(30)
def test_a_disabled_users_event_stream_ends_at_once(world):
    """The stream checks its session on every tick: a user disabled while
    watching stops getting events at once (even with its tokens left)."""
    client, db, clock = world
    v1 = token(client, "v1")
    with client.stream("GET", "/api/events", headers=v1) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        assert next(line for line in lines if line.startswith("event:")) == "event: change"
        conn = sqlite3.connect(db, isolation_level=None)
        try:
            conn.execute("UPDATE users SET disabled = 1 WHERE name = 'v1'")   # as `users disable` does, tokens kept
        finally:
            conn.close()
        assert next(line for line in lines if line.startswith("event:")) == "event: end"
    assert client.get("/api/me", headers=v1).status_code == 401


def inspected(client, db, shop, name):
    case_id = case_of(db, shop)
    r = client.post(f"/api/cases/{case_id}/inspect", headers=token(client, name), json={"result": "violation_found"})
    assert r.status_code == 200, r.text
    return case_id


def grade_of(client, case_id):
    return client.get(f"/api/cases/{case_id}", headers=token(client, "d1")).json()["grade"]["grade"]


def test_a_village_user_cannot_penalise_alone(world):
    """Two-person rule over HTTP: v3's `penalised` is a proposal (202, the
    grade unchanged); v3 cannot confirm it, nor can another village user, nor
    a town user of another town; t2 (town of the case) can."""
    from gateway.store import users
    client, db, clock = world
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        users.add_user(conn, "v3b", "village", "330113002001", PASSWORD, T0)
    finally:
        conn.close()
    case_id = inspected(client, db, "SHOP3", "v3")
    r = client.post(f"/api/cases/{case_id}/close", headers=token(client, "v3"), json={"outcome": "penalised"})
    assert r.status_code == 202 and r.json()["state"] == "inspected" and r.json()["pending_close"]["actor"] == "v3"
    assert grade_of(client, case_id) == "A"
    confirm = {"decision": "confirm", "outcome": "penalised"}
    for name, status, code in (("v3", 403, "case_confirm_self"), ("v3b", 403, "case_confirm_role"),
                               ("t1", 404, "not_found")):
        r = client.post(f"/api/cases/{case_id}/confirm", headers=token(client, name), json=confirm)
        assert (r.status_code, r.json()["code"]) == (status, code), (name, r.text)
    assert grade_of(client, case_id) == "A"
    seen = client.get(f"/api/cases/{case_id}", headers=token(client, "t2")).json()
    assert seen["can_confirm"] and seen["pending_close"]["outcome"] == "penalised"
    assert not client.get(f"/api/cases/{case_id}", headers=token(client, "v3")).json()["can_confirm"]
    r = client.post(f"/api/cases/{case_id}/confirm", headers=token(client, "t2"), json=confirm)
    assert r.status_code == 200 and r.json()["state"] == "closed"
    assert grade_of(client, case_id) == "B"


def test_the_rules_file_decides_which_outcomes_need_a_second_person(template, tmp_path):
    from gateway.supervision.rules import config
    db = copy_of(template, tmp_path / "world")
    cfg = config.load(overrides={"cases": {"confirm_outcomes": ["confirmed", "penalised"], "confirm_role": "district"}})
    app = create_app(db, clock=lambda: T0 + 300_000, rules_cfg=cfg, photos_dir=tmp_path / "photos",
                     session_clock=lambda: T0 + 300_000)
    with TestClient(app) as client:
        case_id = inspected(client, db, "SHOP3", "v3")
        assert client.post(f"/api/cases/{case_id}/close", headers=token(client, "v3"),
                           json={"outcome": "confirmed"}).status_code == 202
        confirm = {"decision": "confirm", "outcome": "confirmed"}
        r = client.post(f"/api/cases/{case_id}/confirm", headers=token(client, "t2"), json=confirm)
        assert r.status_code == 403 and r.json()["code"] == "case_confirm_role"
        r = client.post(f"/api/cases/{case_id}/confirm", headers=token(client, "d1"), json=confirm)
        assert r.status_code == 200
        other = inspected(client, db, "SHOP1", "v1")
        r = client.post(f"/api/cases/{other}/close", headers=token(client, "v1"), json={"outcome": "dismissed"})
        assert r.status_code == 200 and r.json()["state"] == "closed"


HIDDEN = ["\u202e", "\u202a", "\u202d", "\u2066", "\u2067", "\u2068", "\u2069", "\u200b", "\u200c", "\u200d", "\u200e",
          "\u200f", "\ufeff", "\u2060", "\u061c", "\u00ad", "\u2028", "\u0085", "\U000e0041"]


def test_notes_with_direction_overrides_or_zero_width_characters_get_a_clear_422(world):
    client, db, clock = world
    v1 = token(client, "v1")
    case_id = case_of(db, "SHOP1")
    before = snapshot(db)
    for char in HIDDEN:
        notes = "未发现违规" + char + "规违现发已"
        for path, body in (("inspect", {"result": "no_violation_found", "notes": notes}),
                           ("assign", {"assignee": "v1", "notes": notes}),
                           ("close", {"outcome": "dismissed", "notes": notes}),
                           ("confirm", {"decision": "reject", "outcome": "penalised", "notes": notes})):
            r = client.post(f"/api/cases/{case_id}/{path}", headers=v1, json=body)
            assert r.status_code == 422, (path, hex(ord(char)), r.status_code, r.text)
            out = r.json()
            assert out["code"] == "text_hidden_characters" and "invisible" in out["message_en"], out
            assert f"U+{ord(char):04X}" in out["detail"][0]["msg"] and out["detail"][0]["loc"] == ["body", "notes"]
    assert snapshot(db) == before
    ok = client.post(f"/api/cases/{case_id}/inspect", headers=v1, json={"result": "violation_found",
                                                                         "notes": "货架上有百草枯\n已封存"})
    assert ok.status_code == 200
