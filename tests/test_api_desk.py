"""Search, filters, exports, the inspection sheet, the map and the weekly
trends through the API (issue 18, items 8 and 9): each keeps the caller's
area, hostile parameters are refused and change nothing, full ID numbers are
found by district staff only and audited."""

import csv
import io
import sqlite3

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from gateway import store
from gateway.api import create_app
from gateway.enforcement import registry
from gateway.supervision.rules import config
from simulator.processes import wait_for
from tests.support.api_world import PASSWORD, T0, add_queue_findings, build, copy_of

NOW = T0 + 300_000
ID_NUMBER = "330113199001011234"   # S00001's, in tests/support/api_world.py


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    db = build(tmp_path_factory.mktemp("desk-template"), {"now": T0})
    add_queue_findings(db)
    return db


@pytest.fixture
def client(template, tmp_path):
    db = copy_of(template, tmp_path / "world")
    app = create_app(db, clock=lambda: NOW, photos_dir=tmp_path / "photos", session_clock=lambda: NOW)
    with TestClient(app) as c:
        yield c


def login(client, name):
    r = client.post("/api/login", json={"name": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    client.cookies.clear()
    return {"Authorization": "Bearer " + r.json()["token"]}


def audit(client, h, action):
    return [e for e in client.get("/api/audit", headers=h).json()["entries"] if e["action"] == action]


def test_search_finds_a_farmer_by_name_and_card_a_shop_and_a_product(client):
    h = login(client, "d1")
    by_name = client.get("/api/search", params={"q": "张"}, headers=h).json()
    assert [(s["id"], s["name"], s["by"]) for s in by_name["subjects"]] == [("S00001", "张*", "name")]
    by_card = client.get("/api/search", params={"q": "CARD3"}, headers=h).json()
    assert [(s["id"], s["by"]) for s in by_card["subjects"]] == [("S00003", "card")]
    shops = client.get("/api/search", params={"q": "塘栖"}, headers=h).json()["shops"]
    assert [s["id"] for s in shops] == ["SHOP3", "SHOP4"] and shops[0]["town_name"] == "塘栖镇"
    by_reg = client.get("/api/search", params={"q": "pd20080301"}, headers=h).json()["products"]
    assert [(p["reg"], p["name"]) for p in by_reg] == [("PD20080301", "200克/升百草枯水剂")]
    by_product_name = client.get("/api/search", params={"q": "吡虫啉"}, headers=h).json()["products"]
    assert "PD20080101" in [p["reg"] for p in by_product_name]
    paraquat = client.get("/api/products/PD20080301", headers=h).json()
    assert (paraquat["name"], paraquat["status"]) == ("200克/升百草枯水剂", "banned")
    assert client.get("/api/products/PD20080101", headers=h).json()["status"] == "normal"
    assert client.get("/api/products/NOPE", headers=h).status_code == 404


def test_search_finds_any_part_of_a_name_cards_and_id_numbers_by_index(template, tmp_path):
    """Names by any part of them (one character, or several: every pair of
    them indexed), ASCII without regard to case, cards and ID numbers
    exactly; at most 20; a village user finds the farmers registered in the
    village; a name whose characters are all there but not together is not
    a match."""
    db = copy_of(template, tmp_path / "world")
    people = [{"id": f"S9{i:04d}", "name": f"张{'伟芳娜敏静丽强磊军洋'[i % 10]}{i}", "status": "active",
               "town": "330113002", "village": "330113002001", "plots": []} for i in range(25)]
    people += [{"id": "S80001", "name": "欧阳雪梅", "status": "active", "town": "330113001", "cards": ["04A1B2C3"],
                "id_card_no": "33011319800101123x", "plots": []},
               {"id": "S80002", "name": "Zhang Wei Cooperative", "status": "active", "town": "330113001", "plots": []}]
    conn = store.connect(db)
    try:
        registry.import_subjects(conn, people, NOW)
    finally:
        conn.close()
    app = create_app(db, clock=lambda: NOW, photos_dir=tmp_path / "photos", session_clock=lambda: NOW)
    with TestClient(app) as client:
        h = login(client, "d1")

        def found(q, who=h):
            return [(s["id"], s["by"]) for s in client.get("/api/search", params={"q": q}, headers=who).json()["subjects"]]

        assert found("阳雪") == [("S80001", "name")] and found("欧阳雪梅") == [("S80001", "name")]
        assert found("欧雪") == [] and found("梅欧") == []
        assert found("zhang wei") == [("S80002", "name")] == found("COOPERATIVE")
        assert len(found("张")) == 20
        assert found("04A1B2C3") == [("S80001", "card")]
        assert found("33011319800101123X") == [("S80001", "id_number")]
        v3 = login(client, "v3")                  # 塘栖村: the 25 张 registered there, not 欧阳雪梅 in 临平街道
        assert len(found("张", v3)) == 20 and found("阳雪", v3) == []
        assert found("阳雪", login(client, "v1")) == []     # 临平街道's 东湖村: she is registered in the town only


@pytest.mark.parametrize("q", ["%", "_", "\\", "店%"])
def test_search_text_is_text_not_a_pattern(client, q):
    assert client.get("/api/search", params={"q": q}, headers=login(client, "d1")).json()["shops"] == []


def test_search_keeps_to_the_callers_area(client):
    h = login(client, "t2")      # 塘栖镇: SHOP3, SHOP4, S00003
    r = client.get("/api/search", params={"q": "农资店"}, headers=h).json()
    assert [s["id"] for s in r["shops"]] == ["SHOP3"]
    assert client.get("/api/search", params={"q": "张"}, headers=h).json()["subjects"] == []
    assert client.get("/api/search", params={"q": "CARD1"}, headers=h).json()["subjects"] == []


def test_an_id_number_is_found_by_district_staff_only_and_audited(client):
    d1, t1 = login(client, "d1"), login(client, "t1")
    found = client.get("/api/search", params={"q": ID_NUMBER}, headers=d1).json()["subjects"]
    assert [(s["id"], s["by"]) for s in found] == [("S00001", "id_number")]
    assert [e["target"] for e in audit(client, d1, "search_id_number")] == ["S00001"]
    # the town's own farmer, but a town user's ID number search finds nothing and audits nothing
    assert client.get("/api/search", params={"q": ID_NUMBER}, headers=t1).json()["subjects"] == []
    assert len(audit(client, d1, "search_id_number")) == 1


@pytest.mark.parametrize("q", ["", "<script>", "a" * 41, "x\u202ey"])
def test_hostile_searches_are_refused(client, q):
    assert client.get("/api/search", params={"q": q}, headers=login(client, "d1")).status_code == 422


def test_every_list_filters_by_town_village_shop_subject_type_and_days(client):
    h = login(client, "d1")
    q = client.get("/api/queue", params={"shop": "SHOP3"}, headers=h).json()
    assert {c["shop"] for c in q["cases"]} == {"SHOP3"} and q["total"] == 1
    q = client.get("/api/queue", params={"village": "330113001001"}, headers=h).json()
    assert {c["shop"] for c in q["cases"]} == {"SHOP1"}
    q = client.get("/api/queue", params={"code": "banned_product_sold", "town": "330113002"}, headers=h).json()
    assert [c["shop"] for c in q["cases"]] == ["SHOP3"]
    # cases opened on 2025-06-01 (China time); none the day after
    assert client.get("/api/queue", params={"from": "2025-06-01", "to": "2025-06-01"}, headers=h).json()["total"] == 4
    assert client.get("/api/queue", params={"from": "2025-06-02"}, headers=h).json()["total"] == 0
    assert client.get("/api/queue", params={"from": "2025-06-02", "to": "2025-06-01"}, headers=h).json()["total"] == 0
    g = client.get("/api/violations/groups", params={"subject": "S00003"}, headers=h).json()
    assert {x["subject"] for x in g["groups"]} == {"S00003"} and g["total"] == 1
    w = client.get("/api/violations/groups", params={"list": "watch", "shop": "SHOP4"}, headers=h).json()
    assert [x["code"] for x in w["groups"]] == ["clock_skew"] and w["groups"][0]["n"] == 3
    assert client.get("/api/violations/groups", params={"list": "watch", "shop": "SHOP4", "to": "2025-05-31"},
                      headers=h).json()["total"] == 0
    cases = client.get("/api/cases", params={"shop": "SHOP2", "state": "active"}, headers=h).json()["cases"]
    assert cases and {c["shop"] for c in cases} == {"SHOP2"}
    ledger = client.get("/api/shops/SHOP1", params={"subject": "S00002"}, headers=h).json()
    assert [r["type"] for r in ledger["ledger"]] == ["refusal"] and ledger["ledger_page"]["total"] == 1
    assert client.get("/api/shops/SHOP1", params={"from": "2025-06-02"}, headers=h).json()["ledger"] == []
    bought = client.get("/api/subjects/S00001", params={"shop": "SHOP3"}, headers=h).json()
    assert bought["purchases"] == [] and bought["purchases_page"]["total"] == 0
    assert len(client.get("/api/subjects/S00001", params={"shop": "SHOP1"}, headers=h).json()["purchases"]) == 2
    fleet = client.get("/api/terminals", params={"town": "330113002"}, headers=h).json()
    assert {t["id"] for t in fleet["terminals"]} == {"TC", "TD"}


@pytest.mark.parametrize("params, status", [
    ({"from": "2025-13-01"}, 422), ({"from": "yesterday"}, 422), ({"to": "0"}, 422), ({"from": "2025-02-30"}, 422),
    ({"shop": "SHOP'--"}, 422), ({"village": "<b>"}, 422), ({"sort": "id"}, 422), ({"format": "pdf"}, 422),
    ({"town": "330113002"}, 403), ({"shop": "SHOP3"}, 403), ({"village": "330113002001"}, 403)])
def test_hostile_or_foreign_filters_are_refused_and_change_nothing(client, params, status):
    h = login(client, "t1")     # 临平街道: SHOP1, SHOP2
    before = client.get("/api/queue", headers=h).json()
    for path in ("/api/queue", "/api/violations/groups", "/api/cases", "/api/terminals"):
        assert client.get(path, params=params, headers=h).status_code == status, path
    assert client.get("/api/queue", headers=h).json() == before


def test_lists_export_as_csv_and_xlsx_with_the_same_filters_and_area(client):
    h = login(client, "d1")
    r = client.get("/api/queue", params={"format": "csv", "town": "330113001"}, headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    listed = client.get("/api/queue", params={"town": "330113001"}, headers=h).json()
    assert [int(row["案件编号"]) for row in table] == [c["id"] for c in listed["cases"]]
    assert {row["镇街"] for row in table} == {"临平街道"} and "同一张卡" in "".join(row["违规类型"] for row in table)
    r = client.get("/api/violations/groups", params={"format": "xlsx", "list": "watch"}, headers=h)
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats")
    sheet = load_workbook(io.BytesIO(r.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("严重程度", "违规类型", "说明")
    assert any(row[1] == "终端时钟偏差过大" and row[7] == 3 for row in rows[1:])
    # a town user's export holds the town's cases only
    t2 = login(client, "t2")
    table = list(csv.DictReader(io.StringIO(client.get("/api/cases", params={"format": "csv"}, headers=t2)
                                            .content.decode("utf-8-sig"))))
    assert table and {row["镇街"] for row in table} == {"塘栖镇"}
    ledger = client.get("/api/shops/SHOP1", params={"format": "csv"}, headers=h).content.decode("utf-8-sig")
    assert "200克/升百草枯水剂 ×1" in ledger and "拒售" in ledger and "张*" in ledger
    assert any(e["target"] == "SHOP1" and e["detail"] == "export" for e in audit(client, h, "read_ledger"))
    purchases = client.get("/api/subjects/S00001", params={"format": "xlsx"}, headers=h)
    assert len(list(load_workbook(io.BytesIO(purchases.content)).active.iter_rows())) == 3
    fleet = client.get("/api/terminals", params={"format": "csv"}, headers=h).content.decode("utf-8-sig")
    assert fleet.splitlines()[0].startswith("终端,门店")


def test_an_export_holds_the_whole_filtered_list_past_ten_thousand_rows(template, tmp_path):
    """A season of a busy shop's ledger: every row in the file, as many as the
    list counts (exports used to stop at 10,000 without a word)."""
    db = copy_of(template, tmp_path / "world")
    with sqlite3.connect(db) as conn:              # one stored sale, copied under 10,050 new numbers
        terminal, seq = conn.execute("SELECT terminal, seq FROM sales WHERE shop = 'SHOP1' AND type = 'sale' "
                                     "ORDER BY seq LIMIT 1").fetchone()
        copies = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10050) "
        conn.execute(copies + "INSERT INTO records (terminal, seq, type, time, digest, prev, record, received) "
                     "SELECT r.terminal, 100000 + n.i, r.type, r.time - n.i, r.digest, r.prev, r.record, r.received "
                     "FROM records r, n WHERE r.terminal = ? AND r.seq = ?", (terminal, seq))
        conn.execute(copies + "INSERT INTO sales SELECT s.terminal, 100000 + n.i, s.type, s.time - n.i, s.received, "
                     "s.day, s.shop, s.village, s.town, s.district, s.subject, s.card, s.identity, s.mode, "
                     "s.pesticide, s.fertilizer, s.consumption, s.subject_group FROM sales s, n "
                     "WHERE s.terminal = ? AND s.seq = ?", (terminal, seq))
    app = create_app(db, clock=lambda: NOW, photos_dir=tmp_path / "photos", session_clock=lambda: NOW)
    with TestClient(app) as client:
        h = login(client, "d1")
        total = client.get("/api/shops/SHOP1", headers=h).json()["ledger_page"]["total"]
        assert total > 10_050
        r = client.get("/api/shops/SHOP1", params={"format": "csv"}, headers=h)
        table = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
        assert len(table) == total
        assert len({row["记录"] for row in table}) == total                 # each row once
        r = client.get("/api/shops/SHOP1", params={"format": "xlsx"}, headers=h)
        assert len(list(load_workbook(io.BytesIO(r.content), read_only=True).active.values)) == 1 + total


def test_the_old_violation_list_takes_every_filter_and_exports(client):
    h = login(client, "d1")
    everything = client.get("/api/violations", headers=h).json()["violations"]
    assert {v["shop"] for v in everything} >= {"SHOP2", "SHOP3"}
    for params, keep in (({"shop": "SHOP2"}, lambda v: v["shop"] == "SHOP2"),
                         ({"village": "330113001001"}, lambda v: v["village"] == "330113001001"),
                         ({"subject": "S00003"}, lambda v: v["subject"] == "S00003"),
                         ({"code": "card_travel_impossible"}, lambda v: v["code"] == "card_travel_impossible"),
                         ({"from": "2025-06-01", "to": "2025-06-01"}, lambda v: True),
                         ({"from": "2025-06-02"}, lambda v: False)):
        found = client.get("/api/violations", params=params, headers=h).json()["violations"]
        assert found == [v for v in everything if keep(v)], params
    assert any(v["code"] == "card_travel_impossible" for v in everything)
    t1 = login(client, "t1")     # 临平街道: SHOP1, SHOP2
    assert client.get("/api/violations", params={"shop": "SHOP3"}, headers=t1).status_code == 403
    assert client.get("/api/violations", params={"from": "2025-13-01"}, headers=t1).status_code == 422
    r = client.get("/api/violations", params={"format": "csv", "shop": "SHOP2"}, headers=h)
    table = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [int(row["违规编号"]) for row in table] == [v["id"] for v in everything if v["shop"] == "SHOP2"]
    assert {row["门店"] for row in table} == {"西湖农资店"} and all(row["说明"] for row in table)


def test_the_quota_chart_sums_this_periods_use_per_town_and_follows_a_registry_import(template, tmp_path):
    """Used: this period's quota ledger of each town's subjects, not an older
    period's; allowances: summed once per registry revision, and again after
    an import changes an entry."""
    db = copy_of(template, tmp_path / "world")
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO quota_used(subject, category, period, used, rev) VALUES (?, ?, ?, ?, 1)",
                         [("S00001", "pesticide_g", "2025-summer", 700), ("S00001", "pesticide_g", "2024-summer", 900),
                          ("S00003", "pesticide_g", "2025-summer", 50), ("S00003", "fert_n", "2025", 1200)])
    app = create_app(db, clock=lambda: NOW, photos_dir=tmp_path / "photos", session_clock=lambda: NOW)
    with TestClient(app) as client:
        def chart(who):
            towns = client.get("/api/stats/quota", headers=login(client, who)).json()["towns"]
            return {(r["town"], r["category"]): (r["allowance"], r["used"]) for r in towns}

        d1 = chart("d1")
        assert d1[("330113001", "pesticide_g")] == (3000, 700)
        assert d1[("330113002", "pesticide_g")] == (3000, 50) and d1[("330113002", "fert_n")] == (150000, 1200)
        assert {town for town, _ in chart("t2")} == {"330113002"}
        entry = {"id": "S00003", "name": "李四", "status": "active", "town": "330113002",
                 "plots": [{"crop": "rice", "area_cmu": 2000}], "permits": []}     # twice the land
        conn = store.connect(db)
        try:
            registry.import_subjects(conn, [entry], NOW)
        finally:
            conn.close()
        stale = chart("d1")     # the sums before the import, answered while the new ones are made
        assert stale[("330113002", "pesticide_g")] in ((3000, 50), (6000, 50))
        wait_for(lambda: chart("d1")[("330113002", "pesticide_g")] == (6000, 50), 10, "the sums after the import")
        assert chart("d1")[("330113001", "pesticide_g")] == (3000, 700)


def test_the_inspection_sheet_is_a_pdf_for_a_case_in_the_callers_area_only(client):
    d1 = login(client, "d1")
    case = client.get("/api/queue", params={"shop": "SHOP3"}, headers=d1).json()["cases"][0]["id"]
    r = client.get(f"/api/cases/{case}/sheet.pdf", headers=d1)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf" and r.content.startswith(b"%PDF")
    assert client.get(f"/api/cases/{case}/sheet.pdf", headers=login(client, "t2")).status_code == 200
    assert client.get(f"/api/cases/{case}/sheet.pdf", headers=login(client, "t1")).status_code == 404
    assert client.get("/api/cases/999999/sheet.pdf", headers=d1).status_code == 404


def test_the_map_places_shops_and_areas_by_the_grids_coordinates_with_open_cases(client):
    m = client.get("/api/map", headers=login(client, "d1")).json()
    shops = {s["id"]: s for s in m["shops"]}
    assert (shops["SHOP3"]["lat"], shops["SHOP3"]["lon"]) == (30.6, 120.2)
    assert shops["SHOP3"]["open_cases"] == 1 and shops["SHOP3"]["severity"] == 1
    assert shops["SHOP4"]["open_cases"] == 0          # its clock-skew case is on the watch list
    town2 = [a for a in m["areas"] if a["code"] == "330113002"][0]
    assert (town2["lat"], town2["lon"], town2["shops"]) == (30.6005, 120.2005, 2)
    assert m["tiles"] is None
    v = client.get("/api/map", headers=login(client, "v3")).json()
    assert {s["id"] for s in v["shops"]} == {"SHOP3", "SHOP4"}


def test_a_tile_server_is_off_by_default_and_allowed_only_when_configured(template, tmp_path):
    tiles = "https://tiles.example.gov.cn/{z}/{x}/{y}.png"
    db = copy_of(template, tmp_path / "tiles")
    app = create_app(db, clock=lambda: NOW, photos_dir=tmp_path / "photos", session_clock=lambda: NOW,
                     rules_cfg=config.load(overrides={"map": {"tiles": tiles}}))
    with TestClient(app) as c:
        r = c.get("/api/map", headers=login(c, "d1"))
        assert r.json()["tiles"] == tiles
        assert "img-src 'self' https://tiles.example.gov.cn" in r.headers["content-security-policy"]
    with pytest.raises(config.ConfigError):
        config.load(overrides={"map": {"tiles": "javascript:alert(1)//{z}{x}{y}"}})


def test_weekly_trends_count_sales_refusals_and_violations_and_keep_grams_and_millilitres_apart(client):
    h = login(client, "d1")
    w = client.get("/api/stats/weekly", params={"by": "shop", "weeks": 2}, headers=h).json()
    assert w["weeks"] == ["2025-05-19", "2025-05-26"]     # 2025-06-01 is a Sunday: the week of 26 May
    shop1 = {g["code"]: g for g in w["groups"]}["SHOP1"]["weeks"][-1]
    assert (shop1["sales"], shop1["refusals"]) == (2, 1)
    assert (shop1["pesticide_g"], shop1["pesticide_ml"]) == (20, 1000)   # 吡虫啉 20 g; 百草枯 1000 mL, never 1020
    total = w["totals"][-1]
    assert total["violations"] >= 3 and total["pesticide_g"] == 1020 and total["pesticide_ml"] == 1000
    by_town = client.get("/api/stats/weekly", headers=login(client, "t2")).json()
    assert [g["code"] for g in by_town["groups"]] == ["330113002"] and len(by_town["weeks"]) == 12
    daily = client.get("/api/stats/daily", params={"days": 1}, headers=h).json()["days"][0]
    assert (daily["pesticide_g"], daily["pesticide_ml"]) == (1020, 1000)
    assert client.get("/api/stats/weekly", params={"by": "county"}, headers=h).status_code == 422
    assert client.get("/api/stats/weekly", params={"weeks": 0}, headers=h).status_code == 422
