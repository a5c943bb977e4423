"""Online authorization and offline fallback end to end: a real Mosquitto with
ACLs, the real gateway process (killed and restarted), two terminal agents
selling through the counter API."""

from __future__ import annotations

import json

import pytest

from firmware.counter import Cart, Identity
from firmware.ledger import export_lines
from simulator.processes import wait_for
from tests.support import quota_fixtures as fx
from tests.support.quota_district import QuotaDistrict

pytestmark = pytest.mark.slow

SUBJECTS = {"S-ONLINE": 10, "S-RULES": 10, "S-CAPS": 10, "S-APPLIED": 10, "S-TWO": 8, "S-DUP": 10, "S-LATE": 10,
            "S-RESTART": 10}
YEAR = fx.today()[:4]


@pytest.fixture(scope="module")
def running_district(tmp_path_factory):
    """One district of processes for the module, because starting it costs
    seconds. Shared safely: each test sells to a subject of its own (SUBJECTS),
    and asserts only on that subject's balance, sales, authorizations and
    violations, and on records it made itself; no test reads a total. What a
    test kills it restores (and `district` checks), so the order does not matter."""
    d = QuotaDistrict(tmp_path_factory.mktemp("quota"), subjects=SUBJECTS)
    try:
        yield d.start()
    finally:
        d.close()


@pytest.fixture
def district(running_district):
    """The module's district, whole: broker, gateway and both agents running
    and on the broker (an agent takes its time to reconnect after the broker
    restarts)."""
    return running_district.mend()


@pytest.fixture
def gateway_down(district):
    """The gateway is killed for the test and started again afterwards."""
    district.gateway.kill()
    try:
        yield
    finally:
        district.restart_gateway()


def urea(bags: int) -> Cart:
    cart = Cart()
    cart.add(fx.UREA[0], fx.UREA[1], bags)
    return cart


def cart_of(product: tuple[str, str], packs: int = 1) -> Cart:
    cart = Cart()
    cart.add(product[0], product[1], packs)
    return cart


def card(counter, subject: str) -> Identity:
    """A card identity as `counter.read_card` returns it, the card's signed
    payload and UID as its proof (card reading has its own tests)."""
    return fx.card_identity(subject)


def ledger_record(agent, seq: int) -> dict:
    for text in export_lines(agent.ledger.path):
        record = json.loads(text)
        if record["seq"] == seq:
            return record
    raise KeyError(seq)


def used_n(district, subject: str) -> int:
    return district.balance(subject)["fert_n"]["used"]


def test_online_sale_is_approved_recorded_and_counted_once(district):
    t1 = district.agents["T001"]
    who = card(t1.counter, "S-ONLINE")
    outcome = t1.counter.checkout(who, urea(6))
    assert (outcome.approved, outcome.mode, outcome.decision) == (True, "online", "approve")
    assert outcome.auth and outcome.consumption["fert_n"] == 6 * fx.UREA_N_PER_BAG
    body = ledger_record(t1, outcome.seq)["body"]
    assert body["mode"] == "online" and body["auth"] == outcome.auth and body["sale_id"] == outcome.sale_id
    refused = t1.counter.checkout(who, urea(1))  # 12 kg N left, a bag holds 23
    assert (refused.approved, refused.mode, refused.record) == (False, "online", "refusal")
    assert refused.codes == ["quota_exceeded"] and refused.items[0]["max_packs"] == 0
    assert refused.messages == ["超出剩余定额：请减少数量"]
    district.wait_acked("T001")
    state = district.query("SELECT state FROM authorizations WHERE sale_id = ?", [outcome.sale_id])
    assert state == [("matched",)]
    assert used_n(district, "S-ONLINE") == 138000


def test_restricted_and_banned_products_refused_with_their_reasons_online_and_offline(district):
    t1 = district.agents["T001"]
    who = card(t1.counter, "S-RULES")
    banned = fx.product_with_status("banned")
    restricted = fx.product_with_status("restricted", designated=False)
    designated = fx.product_with_status("restricted", designated=True)
    online = {name: t1.counter.checkout(who, cart_of(p)) for name, p in
              (("banned", banned), ("restricted", restricted), ("designated", designated))}
    assert all(o.mode == "online" and not o.approved for o in online.values())
    assert online["banned"].codes == ["product_banned"]
    assert online["restricted"].codes == ["face_required", "restricted_no_permit"]
    assert online["designated"].codes == ["face_required", "restricted_no_permit", "restricted_shop_not_designated"]
    district.gateway.kill()
    try:
        offline = {name: t1.counter.checkout(who, cart_of(p)) for name, p in
                   (("banned", banned), ("restricted", restricted))}
    finally:
        district.restart_gateway()
    assert all(o.mode == "offline" and not o.approved for o in offline.values())
    assert offline["banned"].codes == ["product_banned"]
    assert "offline_restricted_online_only" in offline["restricted"].codes
    assert "restricted_no_permit" in offline["restricted"].codes
    record = ledger_record(t1, offline["restricted"].seq)
    assert record["type"] == "refusal" and record["body"]["mode"] == "offline"


def test_gateway_down_terminal_decides_offline_within_the_caps(district, gateway_down):
    t1 = district.agents["T001"]
    who = card(t1.counter, "S-CAPS")
    over_cap = t1.counter.checkout(who, urea(4))  # 92 kg N > 80 kg per offline sale
    assert (over_cap.approved, over_cap.mode) == (False, "offline")
    assert over_cap.codes == ["offline_cap_exceeded"] and over_cap.items[0]["max_packs"] == 3
    sold = t1.counter.checkout(who, urea(3))
    assert (sold.approved, sold.mode, sold.auth) == (True, "offline", None)
    assert ledger_record(t1, sold.seq)["body"]["mode"] == "offline"
    # the cache now holds 69 kg less: 70 % of the 81 kg left is 56.7 kg, two bags
    again = t1.counter.checkout(who, urea(3))
    assert again.codes == ["offline_fraction_exceeded"] and again.items[0]["max_packs"] == 2


def test_offline_sale_is_applied_when_its_record_arrives(district):
    t1 = district.agents["T001"]
    district.gateway.kill()
    try:
        sold = t1.counter.checkout(card(t1.counter, "S-APPLIED"), urea(3))
        assert (sold.approved, sold.mode) == (True, "offline")
        assert used_n(district, "S-APPLIED") == 0  # the gateway has not seen it yet
    finally:
        district.restart_gateway()
    district.wait_acked("T001")
    wait_for(lambda: used_n(district, "S-APPLIED") == 69000, 20, "offline sale counted at the gateway")
    assert district.query("SELECT count(*) FROM quota_sales WHERE sale_id = ?", [sold.sale_id]) == [(1,)]


def test_two_terminals_selling_offline_overdraw_once_then_one_violation_names_both_shops(district):
    t1, t2 = district.agents["T001"], district.agents["T002"]
    district.gateway.kill()
    try:
        a = t1.counter.checkout(card(t1.counter, "S-TWO"), urea(3))  # 120 kg N allowance, 69 kg each
        b = t2.counter.checkout(card(t2.counter, "S-TWO"), urea(3))
        assert a.approved and b.approved and a.mode == b.mode == "offline"
    finally:
        district.restart_gateway()
    district.wait_acked("T001")
    district.wait_acked("T002")
    wait_for(lambda: district.query("SELECT count(*) FROM quota_sales WHERE subject = 'S-TWO'")[0][0] == 2, 20,
             "both offline sales stored")
    rows = district.query("SELECT code, subject, detail FROM violations WHERE subject = 'S-TWO'")
    assert len(rows) == 1 and rows[0][0] == "over_quota"
    detail = json.loads(rows[0][2])
    assert detail["shops"] == sorted(["shop-T001", "shop-T002"])
    assert detail["categories"]["fert_n"]["over"] == 138000 - 120000
    assert used_n(district, "S-TWO") == 138000


def test_duplicated_authorization_request_consumes_once(district):
    t2 = district.agents["T002"]
    cart = [{"product": fx.UREA[0], "spec": fx.UREA[1], "packs": 2}]
    proof = fx.card_identity("S-DUP").proof
    first = t2.auth.request("dup-sale-1", "S-DUP", "card", cart, 5.0, request_id="dup-req-1", proof=proof)
    second = t2.auth.request("dup-sale-1", "S-DUP", "card", cart, 5.0, request_id="dup-req-2", proof=proof)
    assert first["auth"] == second["auth"] and second.get("replayed") is True
    assert used_n(district, "S-DUP") == 46000


def test_late_authorization_and_its_offline_sale_count_once(district):
    t2 = district.agents["T002"]
    district.gateway.kill()  # the request waits at the broker for the gateway's session
    try:
        sold = t2.counter.checkout(card(t2.counter, "S-LATE"), urea(2))
        assert sold.approved and sold.mode == "offline"
    finally:
        district.restart_gateway()
    wait_for(lambda: district.query("SELECT state FROM authorizations WHERE sale_id = ?", [sold.sale_id]), 20,
             "the late request decided")
    district.wait_acked("T002")
    wait_for(lambda: district.query("SELECT 1 FROM quota_sales WHERE sale_id = ?", [sold.sale_id]), 20, "sale stored")
    assert used_n(district, "S-LATE") == 46000
    assert t2.auth.late >= 1  # the gateway's late answer reached the terminal and was ignored


def test_terminal_restarted_offline_decides_from_its_last_synced_config(district):
    before = district.agents["T002"]
    district.stop_agent("T002")
    # read after the stop: pushes (balances move with every sale) arrive until then
    synced = before.config_store.versions()
    district.gateway.kill()
    district.broker.kill()
    try:
        t2 = district.start_agent("T002")
        assert t2.config_store.versions() == synced
        who = card(t2.counter, "S-RESTART")
        # the synced params allow 80 kg N per offline sale (the shipped sample: 50 kg)
        refused = t2.counter.checkout(who, urea(4))
        assert (refused.mode, refused.codes) == ("offline", ["offline_cap_exceeded"])
        sold = t2.counter.checkout(who, urea(3))
        assert (sold.approved, sold.mode) == (True, "offline")
    finally:
        district.broker.start()
        district.restart_gateway()
    district.wait_acked("T002")
    wait_for(lambda: used_n(district, "S-RESTART") == 69000, 20, "the restarted terminal's sale counted")
    store = district.agents["T002"].config_store
    # balances keep moving (the quota follower applies each stored sale and the
    # gateway pushes them): what the terminal reports must catch up with what it runs
    wait_for(lambda: district.reported_versions("T002") == {n: str(v) for n, v in store.versions().items()},
             20, "the reported versions to match the ones the terminal runs")
