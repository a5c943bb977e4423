"""Voids and packaging returns at the card-only terminal's own buttons
(docs/mcu.md "Voids and returns at the menu"): a board has no stdin, so the
clerk voids the last sale and takes containers back with NEXT / OK on the
OLED menu. The real MicroPython process with the unix twins (buttons and
scanner as files the test appends to, the OLED, buzzer and LED on stdout, the
farmer's card laid on the PN532 emulator), the real Mosquitto and gateway. The
record is the counter's own void / return, as for a stdin line
(test_mcu_counter_records.py): it reaches the gateway exactly once."""

from __future__ import annotations

import json

import pytest

from simulator.processes import wait_for
from tests.support import mcu, quota_fixtures as fx
from tests.support.mcu_district import McuDistrict

UREA = fx.UREA[0]
PESTICIDE = "PD20080102"
MENU = [UREA, PESTICIDE]          # entries 1-2; 3/4 作废上一笔, 4/4 包装回收
TO_VOID = ("NEXT", "NEXT")        # from the first entry, where the menu starts again after each record
TO_RETURN = ("NEXT", "NEXT", "NEXT")
URL = "https://trace.example.cn/q?c="
pytestmark = pytest.mark.timeout(300)


def sell(d: McuDistrict, packs: int) -> str:
    return d.terminal.sell(d.cards["S-M-0001"], [{"product": UREA, "packs": packs}])


def seq(line: str) -> int:
    return int(line.split()[1])


def answer(d: McuDistrict, before: int, timeout: float = 30) -> str:
    """The terminal's VOIDED, RETURNED or ERROR line printed after line `before`."""
    words = ("VOIDED", "RETURNED", "ERROR")
    return wait_for(lambda: next((x for x in d.terminal.lines[before:] if x.split()[:1] and x.split()[0] in words),
                                 None), timeout, "the terminal's answer to the buttons")


def shown(d: McuDistrict, start: str, after: int = 0) -> str:
    """The first OLED screen from the `after`-th on that starts with `start`."""
    return wait_for(lambda: next((s for s in d.oled()[after:] if s.startswith(start)), None), 30,
                    "the OLED showing %r" % start)


def signals(d: McuDistrict, before: int, upto: int) -> int:
    """Buzzer beeps between two points of the terminal's output."""
    return sum(1 for line in d.terminal.lines[before:upto] if line == "BUZZER on")


def test_the_menu_voids_the_last_sale_once_and_the_gateway_gives_its_quota_back_once(tmp_path):
    d = McuDistrict(tmp_path / "district", subjects={"S-M-0001": 10}, menu=MENU).start()
    try:
        d.wait_config()
        sale = sell(d, 8)                                   # 147200 g of 150000
        assert sale.startswith("APPROVED ")
        assert sell(d, 1) == "REFUSED quota_exceeded"       # the newest record is a refusal, not a sale
        records = d.ledger_lines()

        # 作废上一笔: the question names the last sale; NEXT keeps it
        screens = len(d.oled())
        d.press(*TO_VOID, "OK")
        assert shown(d, "作废 Void #%d ?" % seq(sale), screens) == \
            "作废 Void #%d ?|OK 确认 confirm|NEXT 取消 cancel" % seq(sale)
        screens = len(d.oled())
        d.press("NEXT")
        shown(d, "3/4 作废上一笔 Void last|", screens)
        assert d.ledger_lines() == records

        # OK, OK: voided, with the approval's one beep and the LED
        before, screens = len(d.terminal.lines), len(d.oled())
        d.press("OK")
        shown(d, "作废 Void #%d ?" % seq(sale), screens)
        d.press("OK")
        void = answer(d, before)
        assert void.startswith("VOIDED ")
        done_at = d.terminal.lines.index(void)
        assert "OLED 已作废 VOIDED|#%d" % seq(sale) in d.terminal.lines[before:done_at]
        assert signals(d, before, done_at) == 1 and "LED on" in d.terminal.lines[before:done_at]
        record = d.ledger_lines()[-1]
        assert record["type"] == "void" and record["seq"] == seq(void)
        assert record["body"]["voids"] == seq(sale) and record["body"]["reason"] == "clerk_void"
        assert record["body"]["consumption"] == {c: -v for c, v in records[0]["body"]["consumption"].items()}

        # the same again: the counter refuses a second void, nothing recorded, three beeps
        records = d.ledger_lines()
        before, screens = len(d.terminal.lines), len(d.oled())
        d.press(*TO_VOID, "OK")
        shown(d, "作废 Void #%d ?" % seq(sale), screens)
        d.press("OK")
        again = answer(d, before)
        assert again == "ERROR sale_already_voided"
        assert signals(d, before, d.terminal.lines.index(again, before)) == 3
        assert shown(d, "未完成 NOT DONE", screens) == "未完成 NOT DONE|这笔销售已作废|This sale was|already voided"
        assert d.ledger_lines() == records

        # at the gateway: the void stored once, the quota given back once
        wait_for(lambda: (d.quota_sale(seq(sale)) or {}).get("voided_by") == seq(void), 60,
                 "the gateway's quota follower applied the void")
        d.wait_acked()
        d.assert_exactly_once()
        assert [r["body"]["voids"] for r in d.stored() if r["type"] == "void"] == [seq(sale)]
        assert sell(d, 8).startswith("APPROVED ")           # the 147200 g are free again, once
        assert sell(d, 1) == "REFUSED quota_exceeded"
    finally:
        d.close()


def test_the_menu_with_no_sale_on_the_ledger_voids_nothing(tmp_path):
    d = McuDistrict(tmp_path / "district", menu=MENU).start()
    try:
        d.wait_config()
        before = len(d.terminal.lines)
        d.press(*TO_VOID, "OK")
        assert answer(d, before) == "ERROR sale_not_found"
        assert d.ledger_lines() == []
    finally:
        d.close()


def test_the_menu_takes_containers_back_from_the_card_on_the_reader_once(tmp_path):
    d = McuDistrict(tmp_path / "district", menu=MENU).start()
    try:
        d.wait_config()
        sold_code = "1" + PESTICIDE[-6:] + "1" + "002" + "123456789012345678901"
        other_code = "1" + PESTICIDE[-6:] + "1" + "002" + "123456789012345678902"
        sale = d.terminal.sell(d.cards["S-M-0001"], [{"code": URL + sold_code}])
        assert sale.startswith("APPROVED "), sale

        # 包装回收, then NEXT: nothing taken back, the code scanned neither kept nor in the cart
        records = d.ledger_lines()
        screens = len(d.oled())
        d.press(*TO_RETURN, "OK")
        shown(d, "包装回收 Return|已扫 Scanned 0|请扫包装 Scan|NEXT 取消 cancel", screens)
        d.scan(URL + other_code)
        shown(d, "包装回收 Return|已扫 Scanned 1|OK 刷卡 Tap card", screens)
        screens = len(d.oled())
        d.press("NEXT")
        shown(d, "4/4 包装回收 Return|购物车 Cart 0|", screens)
        assert d.ledger_lines() == records

        # OK on 包装回收 again; the scanner reads the first label twice: one container
        screens = len(d.oled())
        d.press("OK")
        shown(d, "包装回收 Return|已扫 Scanned 0", screens)
        d.scan(URL + sold_code, URL + sold_code, other_code)
        shown(d, "包装回收 Return|已扫 Scanned 2|OK 刷卡 Tap card", screens)

        # OK with no card on the reader: refused, nothing recorded, the codes kept for the tap
        before = len(d.terminal.lines)
        d.press("OK")
        refused = answer(d, before)
        assert refused == "ERROR card_not_presented"
        assert signals(d, before, d.terminal.lines.index(refused, before)) == 3
        assert d.ledger_lines() == records

        # the farmer's card on the reader, OK: taken back, one beep
        d.hold_card("S-M-0001")
        before = len(d.terminal.lines)
        d.press("OK")
        done = answer(d, before)
        d.take_card()
        assert done.startswith("RETURNED "), done
        done_at = d.terminal.lines.index(done, before)
        assert "OLED 包装回收 Return 2|请刷卡 Tap card" in d.terminal.lines[before:done_at]
        assert "OLED 已回收 RETURNED|2 x #%d" % seq(done) in d.terminal.lines[before:done_at]
        assert signals(d, before, done_at) == 1
        record = d.ledger_lines()[-1]
        assert record["seq"] == seq(done) and record["type"] == "return"
        assert record["body"] == {"subject": "S-M-0001", "codes": [sold_code, other_code], "clerk": "c1",
                                  "deposit_fen": 100, "links": [seq(sale)]}
        d.wait_acked()
        d.assert_exactly_once()
        assert [r["seq"] for r in d.stored() if r["type"] == "return"] == [seq(done)]
    finally:
        d.close()


def test_the_boards_ascii_oled_shows_the_english_half_of_each_screen():
    """The ESP32's SSD1306 font has printable ASCII only, and framebuf draws
    each byte of a Chinese character as a block (three for 已), which pushed
    the English off the 16 columns. `ssd1306.text_lines` (board_esp32's Oled)
    keeps what the font can draw; drawn with MicroPython's own framebuf, each
    line takes one 8-pixel cell per character, and no line is cut."""
    screens = [["已批准 APPROVED", "#12"], ["3/4 作废上一笔 Void last", "购物车 Cart 0", "扫码或选择 Scan/choose"],
               ["作废 Void #12 ?", "OK 确认 confirm", "NEXT 取消 cancel"],
               ["包装回收 Return", "已扫 Scanned 2", "OK 刷卡 Tap card", "NEXT 取消 cancel"],
               ["未完成 NOT DONE", "这笔销售已作废", "This sale was", "already voided"]]
    result = mcu.run("""
import json, framebuf, ssd1306
for screen in %s:
    shown = ssd1306.text_lines(screen)
    cells = []
    for line in shown:
        f = framebuf.FrameBuffer(bytearray(256), 256, 8, framebuf.MONO_HLSB)
        f.text(line, 0, 0)
        used = [x for x in range(256) if any(f.pixel(x, y) for y in range(8))]
        cells.append(used[-1] // 8 + 1 if used else 0)
    print("SHOWN " + json.dumps([shown, cells]))
""" % mcu.json_arg(screens))
    got = [json.loads(line) for line in result.lines("SHOWN ")]
    assert [shown for shown, _ in got] == [
        ["APPROVED", "#12"], ["3/4 Void last", "Cart 0", "Scan/choose"], ["Void #12 ?", "OK confirm", "NEXT cancel"],
        ["Return", "Scanned 2", "OK Tap card", "NEXT cancel"], ["NOT DONE", "This sale was", "already voided"]], \
        result.stderr
    for shown, cells in got:
        assert cells == [len(line.rstrip()) for line in shown] and max(cells) <= 16
