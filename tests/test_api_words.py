"""Names, not codes (issue 18, item 7): violations as sentences with local
times, products by name, subjects by masked name, categories in Chinese, staff
by their display names."""

import pytest
from fastapi.testclient import TestClient

from gateway.store import users
from gateway.api import create_app
from gateway.api.words import Names, describe, subject_name
from gateway.store import Store
from tests.support.api_world import PASSWORD, T0, build, copy_of

NAMES = Names(product={"PD20080301": "200克/升百草枯水剂", "PD20080209": "3%甲拌磷颗粒剂"}.get,
              shop={"SHOP1": "东湖农资店"}.get, subject=lambda s: s, tz_minutes=480)
# T0 is 2025-06-01 11:00 in Shanghai, 03:00 UTC


@pytest.mark.parametrize("code, detail, zh, en", [
    ("banned_product_sold", {"products": ["PD20080301", "PD20080209"]},
     "售出禁用农药：200克/升百草枯水剂、3%甲拌磷颗粒剂", "Sold a banned pesticide: 200克/升百草枯水剂, 3%甲拌磷颗粒剂"),
    ("card_travel_impossible", {"card": "C1", "km": 42.5, "minutes": 12.0, "other_shop": "SHOP1"},
     "同一张卡 12.0 分钟内先后在东湖农资店和本店使用，两店相距 42.5 公里", "at 东湖农资店 and here 12.0 minutes apart"),
    ("clock_skew", {"direction": "ahead", "seconds": 400, "record_time": T0 + 400_000, "received": T0},
     "终端时钟快 400 秒：记录时间 2025-06-01 11:06，收到时间 2025-06-01 11:00", "ahead by 400 s"),
    ("terminal_silent", {"last_seen": T0, "silent_minutes": 45}, "终端自 2025-06-01 11:00 起 45 分钟无消息",
     "45 minutes, since 2025-06-01 11:00"),
    ("split_purchase", {"kind": "fertilizer", "total": 250000, "limit": 200000, "purchases": 4, "window_minutes": 120},
     "120 分钟内 4 次购买化肥，合计 250 千克，超过上限 200 千克", "250 kg in all, over the limit of 200 kg"),
    ("top_buyer", {"month": "2025-06", "rank": 2, "category": "fert_n", "ratio": 0.934},
     "2025-06 用量排名第 2：氮肥（折纯N）已用定额的 93%", "93% of the Nitrogen (pure N) allowance used"),
    ("override_rate_high", {"sales": 20, "overrides": 9, "ratio": 0.45, "window_hours": 168},
     "168 小时内 20 笔销售中 9 笔由店员代为确认身份（45%）", "9 of 20 sales in 168 hours"),
    ("banned_product_sold", {"products": "not a list"}, "售出禁用农药：", "Sold a banned pesticide: "),
    ("card_travel_impossible", {"km": 9.0, "minutes": 3.0}, "先后在另一店和本店使用", "at another shop and here"),
    ("verifier_crashed", {"detail": "x"}, None, None),
])
def test_violation_details_read_as_sentences_with_local_times(code, detail, zh, en):
    out = describe(code, detail, NAMES)
    if zh is None:     # no sentence of its own: the code's text, never raw JSON
        assert "{" not in out["zh"] and out["zh"] and out["en"]
        return
    assert zh in out["zh"]
    assert en in out["en"]
    assert "1748" not in out["zh"] + out["en"]        # no epoch milliseconds


@pytest.mark.parametrize("entry, shown", [
    ({"name": "张三"}, "张*"), ({"name": "王建国", "kind": "farmer"}, "王*国"),
    ({"name": "临平区绿野水稻专业合作社", "kind": "cooperative"}, "临平********作社"), ({"name": " "}, None),
    (None, None), ({"name": {"x": 1}}, None)])
def test_subjects_are_shown_by_the_name_the_counter_masks(entry, shown):
    assert subject_name(entry) == shown


@pytest.fixture
def client(tmp_path_factory, tmp_path):
    db = copy_of(build(tmp_path_factory.mktemp("words"), {"now": T0}), tmp_path / "world")
    store = Store(db)
    users.add_user(store.conn, "v1", "village", "330113001001", PASSWORD, T0, display_name="王村管")
    store.close()
    app = create_app(db, clock=lambda: T0 + 300_000, photos_dir=tmp_path / "photos",
                     session_clock=lambda: T0 + 300_000)
    with TestClient(app) as c:
        r = c.post("/api/login", json={"name": "d1", "password": PASSWORD})
        c.headers["Authorization"] = "Bearer " + r.json()["token"]
        c.cookies.clear()
        yield c


def test_lists_and_pages_carry_names_for_their_codes(client):
    queue = client.get("/api/queue").json()["cases"]
    shop1 = next(c for c in queue if c["shop"] == "SHOP1")
    assert (shop1["shop_name"], shop1["subject_name"], shop1["assignee_name"]) == ("东湖农资店", "张*", "王村管")
    case = client.get(f"/api/cases/{shop1['id']}").json()
    assert case["violations"][0]["sentence"]["zh"] == "售出禁用农药：200克/升百草枯水剂"
    assert case["user_names"]["v1"] == "王村管" and case["assignee_name"] == "王村管"
    groups = client.get("/api/violations/groups").json()["groups"]
    assert {g["sentence"]["zh"] for g in groups} == {"售出禁用农药：200克/升百草枯水剂", "售出禁用农药：3%甲拌磷颗粒剂"}
    ledger = client.get("/api/shops/SHOP1").json()["ledger"]
    banned = next(r for r in ledger if r["items"] and r["items"][0]["product"] == "PD20080301")
    assert banned["items"][0]["name"] == "200克/升百草枯水剂" and banned["subject_name"] == "张*"
    subject = client.get("/api/subjects/S00001").json()
    assert subject["name"] == "张*" and subject["area_names"] == {"330113001": "临平街道"}
    assert subject["balance"]["fert_n"]["name"] == {"zh": "氮肥（折纯N）", "en": "Nitrogen (pure N)"}
    assert subject["balance"]["fert_n"]["unit"] == "g" and subject["balance"]["fert_n"]["text"]["allowance"] == "150 kg"
    assert subject["purchases"][0]["shop_name"] == "东湖农资店"
    assert client.get("/api/me").json()["tz_minutes"] == 480


@pytest.mark.parametrize("display", ["", " ", "a\u202eb", "x" * 33, "tab\there"])
def test_a_display_name_with_hidden_characters_or_none_at_all_is_refused(tmp_path, display):
    store = Store(tmp_path / "gw.db")
    try:
        with pytest.raises(users.UserError, match="display name"):
            users.add_user(store.conn, "u1", "district", "330113", PASSWORD, T0, display_name=display)
        assert store.conn.execute("SELECT count(*) FROM users").fetchone()[0] == 0
    finally:
        store.close()
