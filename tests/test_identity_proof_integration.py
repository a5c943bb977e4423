"""Issue 15, item 6, end to end: real Mosquitto, the real gateway process, two
terminal agents driven through their counters. T001's shop is in town 1, T002's
in town 2. A card claimed without the card is refused and consumes nothing; a
card shown for a subject of another town is approved and brings that subject's
entry, and only that; each terminal is pushed only its own town's registry;
an override needs its reason, and the override-rate rule sees the overrides."""

from __future__ import annotations

import pytest

from firmware.counter import Cart, Identity
from simulator.processes import wait_for
from tests.support import quota_fixtures as fx
from tests.support.quota_district import QuotaDistrict, gateway_cli

pytestmark = pytest.mark.slow

TOWN1 = {"S-HOME": 100}                      # 1500 kg N: room for a dozen single bags
TOWN2 = {"S-AWAY": 10, "S-AWAY2": 10, "S-AWAY3": 10}   # each test sells to its own subjects


@pytest.fixture(scope="module")
def district(tmp_path_factory):
    root = tmp_path_factory.mktemp("proof")
    d = QuotaDistrict(root, subjects=TOWN1, registry_keys=(fx.registry_public_hex(),))
    try:
        fx.add_shops(d.db, {"shop-T002": (fx.OTHER_TOWN, False)})
        away = fx.write_jsonl(root / "town2.jsonl", fx.subjects(TOWN2, fx.OTHER_TOWN))
        gateway_cli("subjects", "import", str(away), "--db", str(d.db))
        yield d.start()
    finally:
        d.close()


def urea(bags: int) -> Cart:
    cart = Cart()
    cart.add(fx.UREA[0], fx.UREA[1], bags)
    return cart


def used_n(district, subject: str) -> int:
    return district.balance(subject)["fert_n"]["used"]


def pushed(district, name: str) -> list[str]:
    return sorted(e["id"] for e in district.agents[name].config_store.section("subjects")["subjects"])


def test_each_terminal_is_pushed_only_the_registry_of_its_own_town(district):
    assert pushed(district, "T001") == ["S-HOME"]
    assert pushed(district, "T002") == ["S-AWAY", "S-AWAY2", "S-AWAY3"]
    assert district.agents["T001"].config_store.subject("S-AWAY3") is None   # no test sells to it at T001


def test_a_card_claimed_with_no_card_is_refused_online_and_consumes_nothing(district):
    """The issue's case: T001 (town 1) asks for a town-2 subject claiming a card it never read."""
    t1 = district.agents["T001"]
    refused = t1.counter.checkout(Identity("S-AWAY2", "card", "C-S-AWAY2"), urea(3))
    assert (refused.mode, refused.approved, refused.record) == ("online", False, "refusal")
    assert refused.codes == ["identity_unproven"] and refused.action == "identify"
    assert t1.config_store.subject("S-AWAY2") is None     # no registry entry came with the answer
    district.wait_acked("T001")
    assert used_n(district, "S-AWAY2") == 0
    assert district.query("SELECT count(*) FROM quota_moves WHERE subject = 'S-AWAY2'") == [(0,)]
    assert district.query("SELECT state FROM authorizations WHERE subject = 'S-AWAY2'") == [("superseded",)]
    assert pushed(district, "T001") == ["S-HOME"]          # asking about a subject does not pull it in


def test_a_card_shown_for_a_subject_of_another_town_is_approved_with_that_subjects_entry_only(district):
    t1 = district.agents["T001"]
    payload, uid = fx.issue_card("S-AWAY")
    sold = t1.counter.checkout(t1.counter.read_card(payload, uid), urea(3))
    assert (sold.mode, sold.approved) == ("online", True) and sold.auth
    entry = t1.config_store.subject("S-AWAY")             # what the subject panel shows, cached for offline use
    assert entry["town"] == fx.OTHER_TOWN and entry["name"] == "测试S-AWAY" and entry["plots"]
    assert t1.config_store.subject("S-AWAY3") is None     # not the whole town's registry
    district.wait_acked("T001")
    assert used_n(district, "S-AWAY") == 3 * fx.UREA_N_PER_BAG
    assert pushed(district, "T001") == ["S-HOME"]          # and its pushed registry is still its own town's


def test_an_override_needs_its_reason_and_the_override_rate_rule_sees_each_one(district):
    t1 = district.agents["T001"]
    bare = t1.counter.checkout(t1.counter.identify_override("S-HOME"), urea(1))
    assert not bare.approved and bare.codes == ["identity_unproven", "override_reason_missing"]
    sold = [t1.counter.checkout(t1.counter.identify_override("S-HOME", "override_reader_fault"), urea(1))
            for _ in range(10)]
    assert [(s.mode, s.approved) for s in sold] == [("online", True)] * 10
    district.wait_acked("T001")
    assert used_n(district, "S-HOME") == 10 * fx.UREA_N_PER_BAG
    wait_for(lambda: district.query("SELECT count(*) FROM violations WHERE code = 'override_rate_high' "
                                    "AND shop = 'shop-T001'") == [(1,)], 20, "override_rate_high for shop-T001")
    assert district.query("SELECT count(*) FROM sales WHERE shop = 'shop-T001' AND identity = 'override' "
                          "AND type = 'sale'") == [(10,)]
