"""A sale made by the card tap alone (docs/mcu.md "A sale at the counter"): a
board has no stdin, so the goods are chosen with the OLED menu's buttons or
the label scanner and the farmer lays the card on the reader; no sale line is
written. The real MicroPython process with the unix twins (buttons and
scanner as files the test appends to, the OLED, buzzer and LED on stdout, the
card laid on and lifted off the PN532 emulator through its control socket),
the real Mosquitto and gateway. Each tap sells once, whatever the time the
card lies there, and every record reaches the gateway exactly once."""

from __future__ import annotations

import pytest

from simulator.processes import wait_for
from tests.support import quota_fixtures as fx
from tests.support.mcu_district import McuDistrict

UREA = fx.UREA[0]                 # the menu sells its first pack: 40 kg, 18400 g N
PESTICIDE = "PD20080102"
MENU = [UREA, PESTICIDE]
RESULTS = ("APPROVED", "REFUSED")
pytestmark = pytest.mark.timeout(300)


def results(d: McuDistrict, before: int = 0) -> list[str]:
    return [line for line in d.terminal.lines[before:] if line.startswith(RESULTS)]


def result(d: McuDistrict, before: int, timeout: float = 30) -> str:
    """The APPROVED / REFUSED line printed after line `before`."""
    return wait_for(lambda: next(iter(results(d, before)), None), timeout, "the terminal's result for the tap")


def shown(d: McuDistrict, screen: str, after: int = 0) -> str:
    """The first OLED screen from the `after`-th on that starts with `screen`."""
    return wait_for(lambda: next((s for s in d.oled()[after:] if s.startswith(screen)), None), 30,
                    "the OLED showing %r" % screen)


def lifted(d: McuDistrict) -> int:
    return d.terminal.log.read_text().count("tap: card lifted")


def lift(d: McuDistrict) -> None:
    """The card taken off the reader, and the terminal seen to notice it."""
    before = lifted(d)
    d.take_card()
    wait_for(lambda: lifted(d) > before, 30, "the terminal noticing the card lifted")


def choose(d: McuDistrict, presses: int, cart: int) -> None:
    """OK pressed `presses` times on the first menu product, and the cart seen
    to hold `cart` packs (before the card comes, or it would sell fewer)."""
    screens = len(d.oled())
    d.press(*["OK"] * presses)
    wait_for(lambda: any(s.split("|")[1:2] == ["购物车 Cart %d" % cart] for s in d.oled()[screens:]), 30,
             "the cart holding %d packs" % cart)


def test_goods_chosen_at_the_menu_are_sold_by_the_tap_once(tmp_path):
    d = McuDistrict(tmp_path / "district", subjects={"S-M-0001": 10}, menu=MENU).start()
    try:
        d.wait_config()

        # nothing chosen: the tap shows the buyer's remaining quota, asks for the goods, records nothing
        screens = len(d.oled())
        d.hold_card("S-M-0001")
        assert shown(d, "先选货 Choose goods", screens) == \
            "先选货 Choose goods|余 N 150 kg|余 NPK 250 kg|余 Pest 3 kg 4 L"
        lift(d)
        assert results(d) == [] and d.ledger_lines() == []

        # two packs at the menu, then the card: sold, with the approval's beep and LED
        choose(d, 2, 2)
        before = len(d.terminal.lines)
        d.hold_card("S-M-0001")
        first = result(d, before)
        assert first.startswith("APPROVED ")
        at = d.terminal.lines.index(first, before)
        assert "OLED 已批准 APPROVED|#%s" % first.split()[1] in d.terminal.lines[before:at]
        assert d.terminal.lines[before:at].count("BUZZER on") == 1 and "LED on" in d.terminal.lines[before:at]
        sale = d.ledger_lines()[-1]
        assert sale["type"] == "sale" and sale["seq"] == int(first.split()[1])
        assert [(i["product"], i["packs"]) for i in sale["body"]["items"]] == [(UREA, 2)]
        assert sale["body"]["subject"] == "S-M-0001"

        # the card left lying does not buy the next goods: the OLED asks for a new tap
        screens = len(d.oled())
        d.press("OK")
        assert shown(d, "1/4 ", screens).endswith("|购物车 Cart 1|请刷卡 Tap card")
        wait_for(lambda: any(s.startswith("1/4 ") and s.endswith("|购物车 Cart 1|移开卡再刷 Lift, tap again")
                             for s in d.oled()[screens:]), 30, "the OLED asking for the card to be lifted")
        assert results(d, at + 1) == [] and len(d.ledger_lines()) == 1

        # lifted: the cart asks for a tap again; five packs more, tapped: the six sold, once
        screens = len(d.oled())
        lift(d)
        assert shown(d, "1/4 ", screens).endswith("|购物车 Cart 1|请刷卡 Tap card")
        choose(d, 5, 6)
        before = len(d.terminal.lines)
        d.hold_card("S-M-0001")
        second = result(d, before)
        assert second.startswith("APPROVED ") and int(second.split()[1]) == sale["seq"] + 1
        assert [(i["product"], i["packs"]) for i in d.ledger_lines()[-1]["body"]["items"]] == [(UREA, 6)]

        # over the quota (7 x 18400 g of 150000 used up): refused, three beeps, on the ledger
        lift(d)
        choose(d, 1, 1)
        before = len(d.terminal.lines)
        d.hold_card("S-M-0001")
        refused = result(d, before)
        assert refused == "REFUSED quota_exceeded"
        at = d.terminal.lines.index(refused, before)
        assert d.terminal.lines[before:at].count("BUZZER on") == 3
        assert d.ledger_lines()[-1]["type"] == "refusal"
        lift(d)

        assert results(d) == [first, second, refused]
        d.wait_acked()
        d.assert_exactly_once()
        stored = d.stored()
        assert [r["type"] for r in stored] == ["sale", "sale", "refusal"]
        assert [r["body"]["sale_id"] for r in stored if r["type"] == "sale"] == \
            [r["body"]["sale_id"] for r in d.ledger_lines() if r["type"] == "sale"]
    finally:
        d.close()


def test_a_scanned_label_is_sold_by_the_tap_and_a_banned_one_refused_beside_sale_lines(tmp_path):
    """The scanner fills the cart as the menu does; a banned pesticide's EAN
    tapped is refused on the ledger. Sale lines on stdin still sell as
    before while the reader is watched, and each record is stored once."""
    d = McuDistrict(tmp_path / "district", menu=MENU).start()
    try:
        d.wait_config()
        unit_code = "1" + PESTICIDE[-6:] + "1" + "002" + "123456789012345678901"
        screens = len(d.oled())
        d.scan("https://trace.example.cn/q?c=" + unit_code)
        shown(d, "1/4 ", screens)
        before = len(d.terminal.lines)
        d.hold_card("S-M-0001")
        sold = result(d, before)
        assert sold.startswith("APPROVED ")
        items = d.ledger_lines()[-1]["body"]["items"]
        assert [(i["product"], i["spec"], i["code"], i["packs"]) for i in items] == [(PESTICIDE, "002", unit_code, 1)]
        lift(d)

        banned, spec = fx.product_with_status("banned")
        from protocols import catalogue
        ean = catalogue.load()["products"][banned]["packs"][spec]["ean"]
        screens = len(d.oled())
        d.scan(ean)
        shown(d, "1/4 ", screens)
        before = len(d.terminal.lines)
        d.hold_card("S-M-0001")
        assert result(d, before) == "REFUSED product_banned"
        refusal = d.ledger_lines()[-1]
        assert refusal["type"] == "refusal" and [i["product"] for i in refusal["body"]["items"]] == [banned]
        lift(d)

        # the stdin contract, unchanged: a sale line with items sells those, once
        line = d.terminal.sell(d.cards["S-M-0001"], [{"product": UREA, "packs": 1}])
        assert line.startswith("APPROVED ")
        assert [(i["product"], i["packs"]) for i in d.ledger_lines()[-1]["body"]["items"]] == [(UREA, 1)]
        assert [r.split()[0] for r in results(d)] == ["APPROVED", "REFUSED", "APPROVED"]
        d.wait_acked()
        d.assert_exactly_once()
        assert [r["type"] for r in d.stored()] == ["sale", "refusal", "sale"]
    finally:
        d.close()
