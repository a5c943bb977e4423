"""The card-only MicroPython terminal end to end: `micropython firmware/mcu/main.py
--config FILE --sales -` as a real process on the MicroPython unix port, the
PN532 emulator on a pty in its own process, a real Mosquitto and the real
gateway. Sales are approved online and refused with the policy's reasons;
with the gateway or the broker killed they are decided offline within the
deadline; a SIGKILL of the terminal mid-upload and a torn ledger tail lose
nothing. After each, every record of the terminal's flash ledger is stored at
the gateway exactly once, unchanged, and every sale reported approved is
among them."""

from __future__ import annotations

import time

import pytest

from simulator.processes import wait_for
from tests.support import quota_fixtures as fx
from tests.support.mcu_district import McuDistrict

UREA = fx.UREA[0]
pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def district(tmp_path):
    d = McuDistrict(tmp_path / "district").start()
    d.wait_config()
    yield d
    d.close()


def sell(d: McuDistrict, packs: int = 1, subject: str = "S-M-0001") -> str:
    return d.terminal.sell(d.cards[subject], [{"product": UREA, "packs": packs}])


def test_sales_are_approved_online_and_refused_with_the_policy_reason(district):
    d = district
    assert sell(d).startswith("APPROVED ")
    refused = sell(d, packs=500)                    # far beyond a 10 mu rice allowance
    assert refused == "REFUSED quota_exceeded"
    assert d.terminal.sell("04aabbccddeeff", [{"product": UREA, "packs": 1}]) == "REFUSED card_not_presented"
    d.wait_acked()
    d.assert_exactly_once()
    records = d.ledger_lines()
    assert [(r["type"], r["body"].get("mode")) for r in records] == [
        ("sale", "online"), ("refusal", "online"), ("refusal", None)]
    sale = records[0]["body"]
    assert sale["auth"] and sale["proof"]["card"]["uid"] == d.cards["S-M-0001"]
    # a line without a spec sells the product's first pack spec (50 kg urea is "002", 40 kg "001")
    assert sale["items"][0]["spec"] == "001" and sale["consumption"]["fert_n"] == 40000 * 46 // 100
    # what the buyer heard and saw: the unix twins of the buzzer, LED and OLED
    assert "BUZZER on" in d.terminal.lines and "LED on" in d.terminal.lines
    assert any(line.startswith("OLED 拒绝 REFUSED") for line in d.terminal.lines)
