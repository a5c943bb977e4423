"""The rules wired into ingest: a signed record in, its sales index row and
violations committed with it, once; ingest's alerts swept into violations."""

import json

import pytest

from gateway.supervision import grid
from gateway.store import grid as grid_store

from gateway.enforcement import registry
from gateway.enforcement.fleet import provision
from tests.support.inline_ingest import InlineIngest as Ingest
from gateway.supervision.rules import config
from gateway.supervision.rules.engine import RecordHook, Sweeper
from gateway.store import Store
from tests.support.store_backends import backend_db  # noqa: F401 - a fixture
from tests.support.supervision import GRID, KEY, TERMINAL_SHOPS, Chain, sale_body

T0 = 1748746800000  # 2025-06-01 11:00 local


@pytest.fixture
def gw(backend_db):
    store = Store(backend_db)
    grid.import_grid(store.conn, GRID)
    for terminal, shop in TERMINAL_SHOPS.items():
        provision(store, terminal, shop, 0, key_hex=KEY.hex())
    clock = {"now": T0 + 1000}
    ingest = Ingest(store, lambda *a: None, wall_ms=lambda: clock["now"])
    hook = RecordHook(config.load())
    ingest.follow("supervision", hook)
    ingest.start()
    yield store, ingest, clock, hook
    ingest.stop()
    store.close()


def send(ingest, chain, records, clock=None):
    if clock is not None:
        clock["now"] = max(r["time"] for r in records) + 1000
    ingest.submit_batch(f"agri/v1/t/{chain.terminal}/up", chain.terminal, chain.batch(records))
    assert ingest.drain(10)


def violations(store):
    return [dict(zip(("code", "subject", "shop", "terminal", "seq", "detail"), r)) for r in store.conn.execute(
        "SELECT code, subject, shop, terminal, seq, detail FROM violations ORDER BY id")]


def test_banned_sale_is_indexed_and_raises_one_violation_however_often_delivered(gw):
    store, ingest, clock, hook = gw
    chain = Chain("TA")
    records = [chain.add("sale", sale_body(), T0), chain.add("sale", sale_body(product="PD20080301"), T0 + 1)]
    for _ in range(3):
        send(ingest, chain, records)
    found = violations(store)
    assert [(v["code"], v["shop"], v["terminal"], v["seq"]) for v in found] == [("banned_product_sold", "SHOP1", "TA", 2)]
    rows = store.conn.execute("SELECT seq, shop, town, village, subject, pesticide FROM sales ORDER BY seq").fetchall()
    assert rows == [(1, "SHOP1", "330113001", "330113001001", "S00001", 20),
                    (2, "SHOP1", "330113001", "330113001001", "S00001", 1000)]
    assert hook.errors == 0


def test_card_used_at_far_shop_minutes_later_is_impossible_travel(gw):
    store, ingest, clock, hook = gw
    a, c = Chain("TA"), Chain("TC")
    send(ingest, a, [a.add("sale", sale_body(card="CARD9"), T0)], clock)
    send(ingest, c, [c.add("sale", sale_body(card="CARD9"), T0 + 5 * 60_000)], clock)
    send(ingest, c, [c.add("sale", sale_body(card="CARD8"), T0 + 6 * 60_000)], clock)
    found = violations(store)
    assert [(v["code"], v["terminal"], v["seq"]) for v in found] == [("card_travel_impossible", "TC", 1)]
    assert json.loads(found[0]["detail"])["other_shop"] == "SHOP1"


def test_split_purchases_across_shops_raise_once_per_day(gw):
    store, ingest, clock, hook = gw
    a, b = Chain("TA"), Chain("TB")
    # 1.8% abamectin 500 mL packs: 1000 mL each, 3000 mL limit
    for i, ch in enumerate([a, b, a, b]):
        send(ingest, ch, [ch.add("sale", sale_body(product="PD20080103", spec="002", packs=2), T0 + i * 60_000)], clock)
    found = [v for v in violations(store) if v["code"] == "split_purchase"]
    assert len(found) == 1 and json.loads(found[0]["detail"])["total"] == 3000


def test_split_purchases_by_members_of_one_household_raise_once_naming_them(gw):
    store, ingest, clock, hook = gw
    members = [{"id": f"S0000{i}", "status": "active", "group": "HH1"} for i in (1, 2, 3)]
    strangers = [{"id": f"S0000{i}", "status": "active"} for i in (4, 5, 6)]
    registry.import_subjects(store.conn, members + strangers, T0)
    a, b = Chain("TA"), Chain("TB")
    # 1000 mL of abamectin each, below the 3000 mL limit: three members, then three strangers
    buys = [(a, "S00001"), (b, "S00002"), (a, "S00003"), (b, "S00001"), (a, "S00004"), (b, "S00005"), (a, "S00006")]
    for i, (ch, subject) in enumerate(buys):
        body = sale_body(subject=subject, card="CARD-" + subject, product="PD20080103", spec="002", packs=2)
        send(ingest, ch, [ch.add("sale", body, T0 + i * 60_000)], clock)
    found = [v for v in violations(store) if v["code"].startswith("split_purchase")]
    assert [(v["code"], v["subject"], v["seq"]) for v in found] == [("split_purchase_group", "S00003", 2)]
    detail = json.loads(found[0]["detail"])
    assert detail["subjects"] == ["S00001", "S00002", "S00003"] and detail["shops"] == ["SHOP1", "SHOP2"]
    assert detail["total"] == 3000 and detail["group"] == "HH1"
    groups = dict(store.conn.execute("SELECT subject, subject_group FROM sales"))
    assert groups == {"S00001": "HH1", "S00002": "HH1", "S00003": "HH1", "S00004": None, "S00005": None,
                      "S00006": None}
    assert hook.errors == 0


def test_rule_failure_does_not_stop_the_record_from_being_stored(gw):
    store, ingest, clock, hook = gw
    hook.check = lambda *a: 1 / 0
    chain = Chain("TA")
    send(ingest, chain, [chain.add("sale", sale_body(product="PD20080301"), T0)])
    assert store.count_records() == 1 and violations(store) == [] and hook.errors == 1


def test_sweeper_turns_gap_alert_into_violation_once_and_flags_silent_terminal(gw):
    store, ingest, clock, hook = gw
    chain = Chain("TB")
    records = [chain.add("sale", sale_body(), T0 + i) for i in range(4)]
    del records[1]
    send(ingest, chain, records)
    sweeper = Sweeper(store.conn, config.load(), clock=lambda: clock["now"])
    sweeper.tick()
    sweeper.tick()
    assert [(v["code"], v["shop"], v["seq"]) for v in violations(store)] == [("ledger_gap", "SHOP2", 2)]
    sweeper.tick(T0 + 3 * 3600_000)
    assert [v["terminal"] for v in violations(store) if v["code"] == "terminal_silent"] == ["TB"]


def test_grid_import_rejects_a_bad_file_and_changes_nothing(gw):
    store = gw[0]
    bad = {"areas": GRID["areas"], "shops": [{"id": "X1", "name": "x", "village": "nowhere"}]}
    with pytest.raises(grid.GridError, match=r"shops\[0\].village"):
        grid.import_grid(store.conn, bad)
    assert grid_store.shop(store.conn, "X1") is None and len(grid_store.shops(store.conn)) == 4


def test_the_monthly_ranking_reads_without_holding_the_write_lock(gw, monkeypatch):
    """On a busy day the month's read took the low-priority supervision process
    over a minute inside BEGIN IMMEDIATE, and ingest, authorizations and
    statuses timed out waiting: the read now holds no transaction."""
    store = gw[0]
    sweeper = Sweeper(store.conn, config.load(), clock=lambda: T0)
    seen = []
    real = sweeper.month_usage
    monkeypatch.setattr(sweeper, "month_usage", lambda now: seen.append(store.conn.in_transaction) or real(now))
    sweeper.tick(T0 + 2 * 3600_000)
    assert seen == [False]


def test_registry_lookups_one_by_one_and_many_at_once_agree(gw):
    from gateway.enforcement import subjects_view
    from tests.support import quota_fixtures as fx
    store = gw[0]
    entries = fx.subjects({"S1": 3, "S2": 5, "S3": 1})
    entries[1]["group"] = "H1"
    registry.import_subjects(store.conn, entries, T0)
    many = subjects_view.lookup_many(store.conn, ["S1", "S2", "S3", "NOBODY", None])
    assert set(many) == {"S1", "S2", "S3"}
    for sid in ("S1", "S2", "S3"):
        assert many[sid] == subjects_view.lookup(store.conn, sid)
    assert many["S2"]["plots"][0]["area_cmu"] == 500 and many["S2"]["group"] == "H1"
    assert subjects_view.lookup(store.conn, "NOBODY") is None and subjects_view.group_of(store.conn, "S2") == "H1"


def test_offline_sale_proofs_are_checked_without_the_quota_ledger_and_never_stop_the_other_rules(gw):
    """A supervision-only database (no registry keys, no revocations, no
    registry): a card claimed on `{}` and a card nobody trusts raise
    identity_unproven_offline; a face match cannot be judged and raises
    nothing; the banned product in the same record is caught as ever."""
    store, ingest, clock, hook = gw
    from protocols import authz
    from tests.support import quota_fixtures as fx

    chain = Chain("TA")
    shown = {"card": authz.card_proof(*fx.issue_card("S00001", "CARD1"))}
    records = [chain.add("sale", sale_body(mode="offline", proof={}), T0),
               chain.add("sale", sale_body(mode="offline", proof=shown), T0 + 1),
               chain.add("sale", sale_body(identity="face", card=None, mode="offline",
                                           proof={"face": authz.face_proof(0.3, 4)}, product="PD20080301"), T0 + 2)]
    send(ingest, chain, records, clock)
    found = [(v["code"], v["seq"], json.loads(v["detail"]).get("reason")) for v in violations(store)]
    assert found == [("identity_unproven_offline", 1, "identity_unproven"),
                     ("identity_unproven_offline", 2, "card_unknown"), ("banned_product_sold", 3, None)]
    assert store.count_records() == 3 and hook.errors == 0
