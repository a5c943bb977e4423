"""Every violation rule, as a pure function: one case that fires, one that must not."""

import pytest

from gateway.store.grid import Shop
from gateway.supervision.rules import config, hours, identity, integrity, make_event, products, split, terminals, top_buyers, travel
from protocols import catalogue, reasons

CAT = catalogue.load()
CFG = config.load()
T0 = 1748736000000  # 2025-06-01 00:00 UTC = 08:00 in China
BANNED, RESTRICTED, RESTRICTED_FREE, NORMAL = "PD20080301", "PD20080201", "PD20080204", "PD20080101"

SHOP_A = Shop("A", "东湖农资店", "V1", "T1", "D1", False, "07:30-12:00,13:00-18:30", 30.40, 120.30)
SHOP_D = Shop("D", "定点店", "V1", "T1", "D1", True, "", 30.41, 120.31)
SHOP_FAR = Shop("F", "远处农资店", "V9", "T9", "D1", False, "", 31.40, 120.30)  # ~111 km north


def sale(product=NORMAL, identity_="card", subject="S1", card="C1", time=T0 + 3 * 3600_000, shop="A", seq=7,
         rtype="sale", received=None, **extra):
    body = {"subject": subject, "items": [{"product": product, "packs": 1}], "identity": identity_,
            "mode": "online", "clerk": "c1"}
    if card:
        body["card"] = card
    body.update(extra)
    return make_event("TERM1", seq, rtype, time, received if received is not None else time + 1000, body, shop, 480)


def run_products(event, shop=SHOP_A, subject=None, known=True, required="card+face"):
    states = products.item_states(CAT, event)
    return (products.banned_product(event, states) + products.restricted_not_designated(event, states, shop)
            + products.restricted_no_permit(event, states, subject, known)
            + products.face_missing(event, states, required))


def codes(findings):
    return sorted(f.code for f in findings)


def test_every_rule_code_has_chinese_and_english_text():
    from gateway.supervision.rules import CODES
    for code in CODES:
        assert reasons.text(code, "zh") != code and reasons.text(code, "en") != code


def test_banned_product_sold_fires():
    found = products.banned_product(sale(BANNED), products.item_states(CAT, sale(BANNED)))
    assert codes(found) == ["banned_product_sold"] and found[0].detail["products"] == [BANNED]
    assert found[0].dedup == "banned_product_sold:TERM1:7"


def test_banned_product_refused_or_normal_product_does_not_fire():
    refused = sale(BANNED, rtype="refusal")
    assert products.banned_product(refused, products.item_states(CAT, refused)) == []
    normal = sale(NORMAL)
    assert products.banned_product(normal, products.item_states(CAT, normal)) == []


def test_banned_is_judged_on_the_sale_date():
    # 2,4-D butylate was restricted, then banned from 2023-01-29
    before = sale("PD20080208", time=1640995200000)  # 2022-01-01
    assert products.banned_product(before, products.item_states(CAT, before)) == []


def test_restricted_at_non_designated_shop_fires():
    e = sale(RESTRICTED, identity_="card+face")
    assert "restricted_sold_not_designated" in codes(run_products(e, shop=SHOP_A, subject={"permits": [{"ingredients": ["*"]}]}))


def test_restricted_at_designated_shop_with_permit_and_face_does_not_fire():
    e = sale(RESTRICTED, identity_="card+face")
    assert run_products(e, shop=SHOP_D, subject={"permits": [{"ingredients": ["carbofuran"]}]}) == []


def test_restricted_sold_to_subject_without_permit_fires():
    e = sale(RESTRICTED, identity_="card+face")
    found = run_products(e, shop=SHOP_D, subject={"permits": [{"ingredients": ["carbofuran"], "until": "2024-12-31"}]})
    assert codes(found) == ["restricted_sold_no_permit"]


def test_permit_rule_stays_quiet_without_a_registry():
    e = sale(RESTRICTED, identity_="card+face")
    assert run_products(e, shop=SHOP_D, subject=None, known=False) == []


def test_card_without_face_for_restricted_product_fires():
    e = sale(RESTRICTED_FREE, identity_="card")
    found = run_products(e, shop=SHOP_A, subject={"permits": [{"ingredients": ["*"]}]})
    assert codes(found) == ["face_check_missing"]


def test_card_without_face_does_not_fire_where_face_is_not_required():
    e = sale(RESTRICTED_FREE, identity_="card")
    assert run_products(e, shop=SHOP_A, subject={"permits": [{"ingredients": ["*"]}]}, required="card") == []


def test_override_rate_above_threshold_fires():
    e = sale(identity_="override")
    found = identity.override_rate(e, sales=20, overrides=6, cfg=CFG)
    assert codes(found) == ["override_rate_high"] and found[0].detail["ratio"] == 0.3


@pytest.mark.parametrize("sales,overrides,ident", [(20, 4, "override"), (5, 5, "override"), (20, 10, "card")])
def test_override_rate_does_not_fire_at_low_rate_few_sales_or_card_sale(sales, overrides, ident):
    assert identity.override_rate(sale(identity_=ident), sales, overrides, CFG) == []


def test_card_at_two_far_shops_within_an_hour_fires():
    e = sale(shop="F")
    found = travel.card_travel(e, SHOP_FAR, (SHOP_A, e.time - 30 * 60_000, "TERM2", 3), CFG)
    assert codes(found) == ["card_travel_impossible"] and found[0].detail["km"] > 100


def test_card_at_two_far_shops_a_day_apart_does_not_fire():
    e = sale(shop="F")
    assert travel.card_travel(e, SHOP_FAR, (SHOP_A, e.time - 24 * 3600_000, "TERM2", 3), CFG) == []
    assert travel.card_travel(e, SHOP_D, (SHOP_A, e.time - 60_000, "TERM2", 3), CFG) == []  # 1.4 km: neighbours


def test_split_purchases_adding_up_past_the_limit_fire():
    e = sale()
    window = [{"shop": s, "time": e.time - i, "amounts": {"pesticide": 1000}} for i, s in enumerate("ABA")]
    found = split.split_purchase(e, window, CFG)
    assert codes(found) == ["split_purchase"] and found[0].detail["total"] == 3000
    assert found[0].detail["shops"] == ["A", "B"]


def test_one_big_purchase_or_two_small_ones_are_not_split_purchases():
    e = sale()
    assert split.split_purchase(e, [{"shop": "A", "time": 0, "amounts": {"pesticide": 5000}}] * 3, CFG) == []
    assert split.split_purchase(e, [{"shop": "A", "time": 0, "amounts": {"pesticide": 1600}}] * 2, CFG) == []


def member_buys(*parts):
    """The window the engine gathers for a group: (subject, shop, grams) each."""
    return [{"subject": u, "shop": s, "time": T0 + i, "amounts": {"pesticide": g}} for i, (u, s, g) in enumerate(parts)]


def test_small_purchases_by_members_of_one_group_adding_up_fire_once_naming_them():
    e = sale(subject="S3")
    window = member_buys(("S1", "A", 1000), ("S2", "B", 1200), ("S3", "A", 900))
    found = split.split_purchase_group(e, "HH1", window, CFG)
    assert codes(found) == ["split_purchase_group"]
    f = found[0]
    assert f.dedup == f"split_purchase_group:HH1:pesticide:{e.local_date}" and f.subject == "S3"
    assert f.detail["subjects"] == ["S1", "S2", "S3"] and f.detail["shops"] == ["A", "B"]
    assert f.detail["total"] == 3100 and f.detail["group"] == "HH1" and f.detail["purchases"] == 3


def test_group_rule_is_quiet_without_a_group_one_member_or_one_big_purchase():
    e = sale(subject="S3")
    spread = member_buys(("S1", "A", 1000), ("S2", "B", 1200), ("S3", "A", 900))
    # the same totals by unrelated subjects: the engine passes no group
    assert split.split_purchase_group(e, None, spread, CFG) == []
    # all from one member: the one-subject rule's case, not the group's
    assert split.split_purchase_group(e, "HH1", member_buys(*[("S3", "A", 1000)] * 3), CFG) == []
    # one member's big purchase is the quota's business
    assert split.split_purchase_group(e, "HH1", member_buys(("S1", "A", 100), ("S2", "A", 100),
                                                            ("S3", "A", 4000)), CFG) == []
    # below the limit together, or too few purchases
    assert split.split_purchase_group(e, "HH1", member_buys(("S1", "A", 900), ("S2", "A", 900),
                                                            ("S3", "A", 900)), CFG) == []
    assert split.split_purchase_group(e, "HH1", member_buys(("S1", "A", 1600), ("S2", "A", 1600)), CFG) == []


def test_sale_at_night_is_outside_opening_hours():
    e = sale(time=T0 + 14 * 3600_000)  # 22:00 local
    found = hours.outside_hours(e, SHOP_A, CFG)
    assert codes(found) == ["sale_outside_hours"] and found[0].detail["local_time"] == "22:00"


def test_sale_in_opening_hours_grace_or_unknown_hours_does_not_fire():
    assert hours.outside_hours(sale(time=T0 + 2 * 3600_000), SHOP_A, CFG) == []  # 10:00
    assert hours.outside_hours(sale(time=T0 + 4 * 3600_000 + 5 * 60_000), SHOP_A, CFG) == []  # 12:05, grace
    assert hours.outside_hours(sale(time=T0 + 14 * 3600_000), SHOP_D, CFG) == []  # no hours registered


def test_silent_terminal_fires_once_per_silence():
    now = T0 + 3600_000
    found = terminals.terminal_silent(now, [{"id": "TERM1", "shop": "A", "last_seen": T0}], CFG)
    assert codes(found) == ["terminal_silent"] and found[0].dedup == f"terminal_silent:TERM1:{T0}"


def test_recently_seen_or_never_seen_terminal_is_not_silent():
    now = T0 + 10 * 60_000
    assert terminals.terminal_silent(now, [{"id": "X", "shop": None, "last_seen": T0},
                                           {"id": "Y", "shop": None, "last_seen": None}], CFG) == []


def test_record_stamped_in_the_future_or_backwards_is_clock_skew():
    ahead = sale(time=T0 + 3600_000, received=T0)
    assert [f.detail["direction"] for f in terminals.clock_skew(ahead, None, CFG)] == ["ahead"]
    back = sale(time=T0, received=T0)
    assert [f.detail["direction"] for f in terminals.clock_skew(back, T0 + 3600_000, CFG)] == ["back"]


def test_late_offline_record_is_not_clock_skew():
    late = sale(time=T0, received=T0 + 6 * 3600_000)  # uploaded 6 h after the sale
    assert terminals.clock_skew(late, T0 - 60_000, CFG) == []


def test_growing_backlog_fires():
    found = terminals.backlog_growing({"TERM1": [(1, 50), (2, 120), (3, 300)]}, {"TERM1": "A"}, CFG)
    assert codes(found) == ["backlog_growing"] and found[0].shop == "A"


def test_shrinking_or_small_backlog_does_not_fire():
    assert terminals.backlog_growing({"T": [(1, 500), (2, 400), (3, 300)], "U": [(1, 1), (2, 2), (3, 3)]}, {}, CFG) == []


def test_top_buyers_per_district_relative_to_allowance():
    usage = [{"subject": f"S{i}", "district": "D1", "category": "fert_n", "used": 100 - i, "allowance": 100}
             for i in range(10)]
    usage.append({"subject": "S99", "district": "D2", "category": "fert_n", "used": 90, "allowance": 100})
    found = top_buyers.top_buyers("2025-06", usage, CFG)
    assert [(f.subject, f.detail["rank"]) for f in found if f.detail["district"] == "D1"] == [
        ("S0", 1), ("S1", 2), ("S2", 3), ("S3", 4), ("S4", 5)]
    assert [f.subject for f in found if f.detail["district"] == "D2"] == ["S99"]


def test_low_users_are_not_top_buyers():
    usage = [{"subject": "S1", "district": "D1", "category": "fert_n", "used": 10, "allowance": 100},
             {"subject": "S2", "district": "D1", "category": "fert_n", "used": 500, "allowance": 0}]
    assert top_buyers.top_buyers("2025-06", usage, CFG) == []


def test_gap_and_chain_break_alerts_become_violations():
    alerts = [{"id": 1, "kind": "ledger_gap", "terminal": "T", "seq": 4, "seq_to": 6, "detail": "x"},
              {"id": 2, "kind": "chain_break", "terminal": "T", "seq": 9, "seq_to": None, "detail": "y"}]
    found = integrity.from_alerts(alerts, {"T": "A"})
    assert codes(found) == ["chain_break", "ledger_gap"] and {f.shop for f in found} == {"A"}


def test_alerts_on_what_no_honest_terminal_sends_become_violations():
    """A forged far-off seq, a junk flood past the quarantine budget, a message
    that kills a verifier: each reaches an inspector, named by its terminal."""
    from protocols import reasons
    alerts = [{"id": i, "kind": kind, "terminal": "T", "seq": None, "seq_to": None, "detail": ""}
              for i, kind in enumerate(("seq_beyond_window", "quarantine_budget_exceeded", "verifier_crashed"))]
    found = integrity.from_alerts(alerts, {"T": "A"})
    assert codes(found) == ["quarantine_budget_exceeded", "seq_beyond_window", "verifier_crashed"]
    assert all(reasons.text(f.code, "zh") != f.code for f in found)


def test_unknown_alert_kinds_are_not_violations():
    assert integrity.from_alerts([{"id": 3, "kind": "something_else", "terminal": "T", "seq": 1}], {}) == []


def test_config_rejects_unknown_keys_and_bad_types_naming_them(tmp_path):
    bad = tmp_path / "rules.toml"
    bad.write_text("[travel]\nmax_speed_kmh = 'fast'\n")
    with pytest.raises(config.ConfigError, match="travel.max_speed_kmh"):
        config.load(bad)
    bad.write_text("[travle]\nx = 1\n")
    with pytest.raises(config.ConfigError, match="unknown key travle"):
        config.load(bad)
    good = tmp_path / "ok.toml"
    good.write_text("[split]\nlimits = { pesticide = 10 }\n[silent]\nminutes = 5\n")
    cfg = config.load(good)
    assert cfg["split"]["limits"] == {"pesticide": 10} and cfg["silent"]["minutes"] == 5


def test_group_split_thresholds_load_from_toml(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text("[split_group]\nmin_subjects = 3\nlimits = { fertilizer = 50000 }\n")
    cfg = config.load(path)
    assert cfg["split_group"]["min_subjects"] == 3 and cfg["split_group"]["limits"] == {"fertilizer": 50000}
    assert cfg["split_group"]["window_minutes"] == 120
    path.write_text("[split_group]\nlimits = { fertilizer = -1 }\n")
    with pytest.raises(config.ConfigError, match="split_group.limits.fertilizer"):
        config.load(path)
