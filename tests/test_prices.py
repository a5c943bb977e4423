"""The shop's price list and what a sale costs: set by the owner on the
terminal, copied into each sale record at the prices the cart was filled at,
with the packaging deposit on pesticide packs as its own figure."""

from __future__ import annotations

import json
import os
import stat

import pytest

from firmware.counter import Cart, Identity
from firmware.prices import PriceError, PriceList, charge, parse_yuan
from protocols import catalogue, envelope

from tests.support import quota_fixtures as fx
from tests.test_offline_counter import KEY, make_agent, sync

WHO = Identity("S1", "card", "CARD-1")


def pesticide() -> tuple[str, str]:
    data = catalogue.load()
    for key in sorted(data["products"]):
        prod = data["products"][key]
        if prod["kind"] == "pesticide" and catalogue.status_on(data, prod, fx.today())["status"] == "normal":
            return key, sorted(prod["packs"])[0]
    raise LookupError("no normal pesticide in the sample catalogue")


@pytest.fixture
def agent(tmp_path):
    a = make_agent(tmp_path)
    sync(a.config_store)
    yield a
    a.stop()


def body_of(agent, seq: int) -> dict:
    record = json.loads(agent.ledger.pending(seq - 1, 1)[0][1])
    envelope.verify_record(record, KEY)      # still a valid, authentic record on the wire
    return record["body"]


def test_parse_yuan_takes_what_a_clerk_types_and_refuses_the_rest():
    assert [parse_yuan(t) for t in ("12", "12.5", "12.50", "0.05", " 3 元", "¥7.1")] == [1200, 1250, 1250, 5, 300, 710]
    for bad in ("", "-1", "1.234", "1e3", "abc", "100001", ".5", "1.5x"):
        with pytest.raises(PriceError) as err:
            parse_yuan(bad)
        assert err.value.code == "price_invalid"


def test_the_price_list_keeps_every_change_and_refuses_bad_prices(tmp_path):
    prices = PriceList(tmp_path / "t.prices.db")
    assert stat.S_IMODE(os.stat(tmp_path / "t.prices.db").st_mode) == 0o600
    prices.set("P1", "001", 1200, "owner", 1)
    prices.set("P1", "001", 1350, "owner", 2)
    prices.set_deposit(50, "owner", 3)
    for bad in (-1, 10_000_001, 1.5, True, "12"):
        with pytest.raises(PriceError):
            prices.set("P1", "001", bad, "clerk", 4)
    assert prices.price("P1", "001") == 1350 and prices.price("P1", "002") is None
    assert prices.deposit_fen() == 50
    assert prices.remove("P1", "001", "owner", 5) and not prices.remove("P1", "001", "owner", 6)
    assert [(c["product"], c["fen"], c["time_ms"]) for c in prices.changes()] == [
        ("P1", None, 5), ("deposit", 50, 3), ("P1", 1350, 2), ("P1", 1200, 1)]
    prices.close()
    reopened = PriceList(tmp_path / "t.prices.db")
    assert reopened.price("P1", "001") is None and reopened.deposit_fen() == 50 and len(reopened.changes()) == 4


def test_charge_counts_approved_lines_and_the_deposit_on_pesticide_packs_only():
    bill = charge([(1000, 2, True, True), (500, 1, False, True), (None, 3, True, False), (800, 1, True, False)], 50)
    assert bill.lines == (2000, None, None, 800)
    assert (bill.deposit_fen, bill.total_fen, bill.unpriced) == (100, 2900, 1)


def test_a_sale_records_line_prices_deposit_and_total_at_the_cart_prices(agent):
    drug = pesticide()
    agent.prices.set(*fx.UREA, 13500, "owner", 1)
    agent.prices.set(*drug, 2600, "owner", 1)
    agent.prices.set_deposit(50, "owner", 1)
    cart = Cart()
    agent.counter.add(cart, *fx.UREA, 2)
    agent.counter.add(cart, *drug, 3)
    agent.prices.set(*fx.UREA, 99900, "owner", 2)     # changed after the line went into the cart
    out = agent.counter.checkout(WHO, cart)
    assert out.approved
    body = body_of(agent, out.seq)
    assert [item.get("price_fen") for item in body["items"]] == [27000, 7800]
    assert body["deposit_fen"] == 150 and body["total_fen"] == 27000 + 7800 + 150
    assert out.charge.total_fen == body["total_fen"]


def test_an_unpriced_shop_records_no_money_and_a_refusal_costs_nothing(agent):
    out = agent.counter.checkout(WHO, _urea(1))
    body = body_of(agent, out.seq)
    assert out.approved and "total_fen" not in body and "deposit_fen" not in body
    assert all("price_fen" not in item for item in body["items"])
    agent.prices.set(*fx.UREA, 13500, "owner", 1)
    cart = Cart()
    agent.counter.add(cart, *fx.UREA, 50)
    refused = agent.counter.checkout(WHO, cart)
    assert refused.record == "refusal" and refused.charge is None
    assert all("price_fen" not in item for item in body_of(agent, refused.seq)["items"])


def _urea(bags: int) -> Cart:
    cart = Cart()
    cart.add(*fx.UREA, bags)
    return cart
