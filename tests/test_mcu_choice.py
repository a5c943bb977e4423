"""Choosing the product on the card-only terminal (docs/mcu.md "Choosing the
product"): the label QR scanner on the second UART and the OLED menu of the
shop's top products with its NEXT / OK buttons, run in the real MicroPython
process with the unix twins (a file the test appends scanner lines and button
presses to; the OLED recorded on stdout), against the real broker and gateway."""

from __future__ import annotations

import pytest

from tests.support import quota_fixtures as fx
from tests.support.mcu_district import McuDistrict

PESTICIDE = "PD20080102"
MENU = [fx.UREA[0], PESTICIDE]


@pytest.fixture(scope="module")
def district(tmp_path_factory):
    d = McuDistrict(tmp_path_factory.mktemp("choice") / "district", menu=MENU).start()
    try:
        d.wait_config()
        yield d
    finally:
        d.close()


def _oled(d) -> list[str]:
    return [line[len("OLED "):] for line in d.terminal.lines if line.startswith("OLED ")]


def test_a_label_scanned_before_the_tap_is_what_the_tap_sells(district):
    d = district
    unit_code = "1" + PESTICIDE[-6:] + "1" + "002" + "123456789012345678901"
    d.scan("https://trace.example.cn/q?c=" + unit_code)
    result = d.terminal.sell(d.cards["S-M-0001"], None)
    assert result.startswith(("APPROVED", "REFUSED")) and "cart" not in result and "labelcode" not in result
    items = d.ledger_lines()[-1]["body"]["items"]
    assert [(i["product"], i["spec"], i["code"], i["packs"]) for i in items] == [(PESTICIDE, "002", unit_code, 1)]
    assert any("|购物车 Cart 1|请刷卡 Tap card" in line for line in _oled(d))


def test_the_menu_buttons_choose_a_top_product_and_its_packs(district):
    """NEXT moves to the second product, past the void and the return
    (test_mcu_menu_records.py) and round to the first again; OK twice is two
    packs of it. The OLED shows each step with the catalogue's name."""
    d = district
    shown = len(_oled(d))
    d.press("NEXT", "NEXT", "NEXT", "NEXT", "OK", "OK")
    assert d.terminal.sell(d.cards["S-M-0001"], None).startswith("APPROVED")
    items = d.ledger_lines()[-1]["body"]["items"]
    assert [(i["product"], i["packs"]) for i in items] == [(fx.UREA[0], 2)]
    steps = _oled(d)[shown:]
    assert steps[0].startswith("2/4 ") and steps[1].startswith("3/4 作废上一笔 Void last|")
    assert steps[2].startswith("4/4 包装回收 Return|") and steps[3].startswith("1/4 尿素")
    assert steps[4].endswith("购物车 Cart 1|请刷卡 Tap card") and steps[5].split("|")[1] == "购物车 Cart 2"


def test_a_bad_scan_is_refused_on_the_ledger_and_the_cart_starts_empty_again(district):
    d = district
    before = len(d.ledger_lines())
    d.scan("no code here")
    assert d.terminal.sell(d.cards["S-M-0001"], None) == "REFUSED labelcode_no_unit_code"
    assert len(d.ledger_lines()) == before + 1
    assert d.terminal.sell(d.cards["S-M-0001"], None) == "REFUSED cart_line_invalid"   # nothing chosen
    d.wait_acked()
    d.assert_exactly_once()


def test_a_menu_that_is_not_a_short_list_of_products_is_a_config_error(tmp_path):
    """counter.menu is named in the error, exit 2, and nothing is made."""
    import json
    import subprocess

    from tests.support import mcu
    for menu in ("XK13-001-00101", ["a", "b", "c", "d", "e", "f", "g"], [1]):
        config = tmp_path / "menu.json"
        config.write_text(json.dumps({
            "terminal": {"id": "M001", "key": "00" * 32}, "broker": {"url": "mqtt://127.0.0.1:1"},
            "ledger": {"dir": str(tmp_path / "x")}, "config": {"dir": str(tmp_path / "y")},
            "counter": {"menu": menu}}))
        proc = subprocess.run([mcu.micropython(), str(mcu.MCU / "main.py"), "--config", str(config)],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and "counter.menu" in proc.stderr and str(config) in proc.stderr, proc.stderr
    assert not (tmp_path / "x").exists()
