"""Voids and packaging returns at the card-only terminal (docs/mcu.md "Running
it"), as the Pi counter records them: the real MicroPython process with the
real Mosquitto, gateway and PN532 emulator. A void reaches the gateway once
and gives the quota back there (its quota_sales row) and in the terminal's
offline cache, once; a return is on the ledger with its codes, deposit and
the sales it links to. A void or return the counter must not record gets an
ERROR line and changes nothing."""

from __future__ import annotations

import pytest

from simulator.processes import wait_for
from tests.support import quota_fixtures as fx
from tests.support.mcu_district import McuDistrict

UREA = fx.UREA[0]
N_PER_PACK = 18400   # the first spec, 40 kg at 46 % N; 10 mu of rice may take 150000 g N a year
PESTICIDE = "PD20080102"
pytestmark = pytest.mark.timeout(300)


def sell(d: McuDistrict, packs: int) -> str:
    return d.terminal.sell(d.cards["S-M-0001"], [{"product": UREA, "packs": packs}])


def seq(line: str) -> int:
    return int(line.split()[1])


def given_back(d: McuDistrict, sale: int, void: int) -> dict:
    return wait_for(lambda: (d.quota_sale(sale) or {}).get("voided_by") == void and d.quota_sale(sale), 60,
                    "the gateway's quota follower applied the void")


def test_a_void_gives_the_quota_back_at_the_gateway_once(tmp_path):
    d = McuDistrict(tmp_path / "district", subjects={"S-M-0001": 10}).start()
    try:
        d.wait_config()
        sale = sell(d, 8)                                   # 147200 g of 150000
        assert sale.startswith("APPROVED ")
        assert sell(d, 1) == "REFUSED quota_exceeded"
        void = d.counter_line({"void": seq(sale), "reason": "clerk_void"})
        assert void.startswith("VOIDED ")
        before = d.ledger_lines()
        assert d.counter_line({"void": seq(sale)}) == "ERROR sale_already_voided"
        assert d.counter_line({"void": seq(sale) + 1}) == "ERROR sale_not_found"   # the refusal
        assert d.counter_line({"void": 999}) == "ERROR sale_not_found"
        assert d.counter_line({"void": "1"}) == "ERROR sale_not_found"
        assert d.counter_line({"void": seq(sale), "reason": "not an id!"}).startswith("ERROR ")
        assert d.ledger_lines() == before                   # nothing recorded by those
        record = before[-1]
        assert record["type"] == "void" and record["seq"] == seq(void)
        sold = before[0]["body"]
        assert record["body"]["voids"] == seq(sale) and record["body"]["subject"] == "S-M-0001"
        assert record["body"]["consumption"] == {c: -v for c, v in sold["consumption"].items()}
        assert record["body"]["auth"] == sold["auth"]
        row = given_back(d, seq(sale), seq(void))
        assert row["applied"]
        d.wait_acked()
        d.assert_exactly_once()
        assert [r["body"]["voids"] for r in d.stored() if r["type"] == "void"] == [seq(sale)]
        # the 147200 g are free again at the gateway, once: 8 packs fit, a ninth does not
        assert sell(d, 8).startswith("APPROVED ")
        assert sell(d, 1) == "REFUSED quota_exceeded"
        assert [r["body"]["mode"] for r in d.ledger_lines() if r["type"] == "sale"] == ["online", "online"]
    finally:
        d.close()


def test_a_void_offline_gives_the_quota_back_at_once_and_at_the_gateway_later(tmp_path):
    d = McuDistrict(tmp_path / "district", subjects={"S-M-0001": 10}).start()
    try:
        d.wait_config()
        d.gateway.kill()
        sale = sell(d, 4)                                   # 73600 g: under the 80 kg cap and 70 % of 150000
        assert sale.startswith("APPROVED ")
        assert sell(d, 4).startswith("REFUSED ")            # 70 % of the 76400 g left is 53480
        void = d.counter_line({"void": seq(sale)})
        assert void.startswith("VOIDED ")
        again = sell(d, 4)                                  # the offline cache gave the 73600 g back
        assert again.startswith("APPROVED ")
        assert [r["body"]["mode"] for r in d.ledger_lines() if r["type"] == "sale"] == ["offline", "offline"]
        d.gateway.start().wait_subscribed()
        given_back(d, seq(sale), seq(void))
        d.wait_acked()
        d.assert_exactly_once()
        assert [r["body"]["voids"] for r in d.stored() if r["type"] == "void"] == [seq(sale)]
        # at the gateway only the second offline sale counts: 73600 + 73600 fit, 18400 more do not
        assert sell(d, 4).startswith("APPROVED ")
        assert d.ledger_lines()[-1]["body"]["mode"] == "online"
        assert sell(d, 1) == "REFUSED quota_exceeded"
    finally:
        d.close()


def test_containers_come_back_with_their_codes_deposit_and_sales(tmp_path):
    d = McuDistrict(tmp_path / "district").start()
    try:
        d.wait_config()
        sold_code = "1" + PESTICIDE[-6:] + "1" + "002" + "123456789012345678901"
        other_code = "1" + PESTICIDE[-6:] + "1" + "002" + "123456789012345678902"
        sale = d.terminal.sell(d.cards["S-M-0001"], [{"code": "https://trace.example.cn/q?c=" + sold_code}])
        assert sale.startswith("APPROVED "), sale
        card = d.cards["S-M-0001"]
        before = d.ledger_lines()
        for codes, error in (([], "return_empty"), ([sold_code, sold_code], "return_duplicate"),
                             (["6901234567892"], "return_code_required"), ([7], None)):
            line = d.counter_line({"return": card, "codes": codes})
            assert line.startswith("ERROR ") and (error is None or line == "ERROR " + error), line
        assert d.counter_line({"return": "04aabbccddeeff", "codes": [other_code]}) == "ERROR card_not_presented"
        assert d.ledger_lines() == before
        done = d.counter_line({"return": card, "codes": ["https://trace.example.cn/q?c=" + sold_code, other_code]})
        assert done.startswith("RETURNED ")
        record = d.ledger_lines()[-1]
        assert record["seq"] == seq(done) and record["type"] == "return"
        assert record["body"] == {"subject": "S-M-0001", "codes": [sold_code, other_code], "clerk": "c1",
                                  "deposit_fen": 100, "links": [seq(sale)]}
        d.wait_acked()
        d.assert_exactly_once()
        assert [r["seq"] for r in d.stored() if r["type"] == "return"] == [seq(done)]
    finally:
        d.close()
