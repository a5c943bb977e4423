"""The ESC/POS printer driver against its twin on a pseudo-terminal: the bytes the
driver writes are exactly the receipt's bytes, the emulator decodes them back to
the text and QR payload the farmer would hold, status requests are answered like
a printer does, and a missing printer is a clear error, not a hang."""

from __future__ import annotations

import hashlib
import os

import pytest

from firmware import receipt
from protocols.display import mask_name
from hardware.printer import escpos
from hardware.printer.driver import Printer, PrinterError, parse_url
from hardware.printer.emulator import PrinterEmulator

pytestmark = pytest.mark.timeout(30)

KNOWN = receipt.SaleReceipt(
    shop="塘栖农资店", terminal="T001", seq=17, time_ms=1764300000123, clerk="c1",
    subject_name=mask_name("王建国"), subject_id="S-330110-0001",
    items=[receipt.ReceiptItem("尿素（总氮≥46.0%）", 2, "50 kg/袋"),
           receipt.ReceiptItem("3%克百威颗粒剂", 1, "1 kg/袋", approved=False, reason="该主体没有此限制使用农药的使用许可")],
    remaining=[("氮肥（折纯N）", receipt.amount_text(104000, "g"))])


@pytest.fixture
def emulator():
    with PrinterEmulator() as emu:
        yield emu


def test_known_receipt_goes_over_the_pty_byte_for_byte(emulator):
    data = receipt.render(KNOWN)
    # the layout is pinned: a change to the receipt must be a deliberate one
    assert hashlib.sha256(data).hexdigest()[:16] == PINNED_DIGEST, data
    assert data.startswith(b"\x1b@\x1c&\x1ba\x01\x1bE\x01\x1d!\x11")
    assert "农资实名购买小票".encode("gb18030") in data
    qr_store = b"\x1d(k" + bytes([len("T001-000017") + 3, 0, 49, 80, 48]) + b"T001-000017"
    assert qr_store in data and data.endswith(b"\x1bd\x02\x1dVB0")
    Printer(emulator.path).print(data)
    got = emulator.wait_receipt(1)
    assert bytes(emulator.raw) == data
    assert got.cut and got.qr == ["T001-000017"]
    text = got.text
    assert "单号：T001-000017" in text and "尿素（总氮≥46.0%）" in text and "x2" in text
    assert "王*国" in text and "王建国" not in text
    assert "未售" in text and "没有此限制使用农药的使用许可" in text
    assert "104 kg" in text
    title = got.lines[0]
    assert (title.text, title.bold, title.width, title.height, title.align) == ("农资实名购买小票", True, 2, 2, "center")


PINNED_DIGEST = "36280f2af6d51519"


def test_offline_sale_is_marked_on_paper_and_return_names_the_sale(emulator):
    printer = Printer(emulator.path)
    offline = receipt.SaleReceipt(**{**KNOWN.__dict__, "mode": "offline", "seq": 18})
    printer.print(receipt.render(offline))
    ret = receipt.SaleReceipt(shop="塘栖农资店", terminal="T001", seq=19, time_ms=1764300100000, clerk="c1",
                              subject_name="王*国", subject_id="S-330110-0001", kind="return",
                              items=[receipt.ReceiptItem("10%吡虫啉可湿性粉剂", 1)], deposit_fen=50, links=[17])
    printer.print(receipt.render(ret))
    assert "【离线销售 待上传】" in emulator.wait_receipt(1).text
    back = emulator.wait_receipt(2)
    assert "对应销售单：T001-000017" in back.text and "0.50 元" in back.text and back.qr == ["T001-000019"]


def test_text_cannot_smuggle_commands_to_the_printer():
    doc = escpos.Document()
    doc.text("好\x1dV\x00产品\x1b@")
    decoder = escpos.Decoder()
    assert decoder.feed(doc.bytes()) == []          # no cut was smuggled in
    assert decoder.current.lines[-1].text == "好V产品@"


def test_decoder_takes_bytes_in_any_chunking():
    data = receipt.render(KNOWN)
    whole = escpos.Decoder().feed(data)[0]
    decoder = escpos.Decoder()
    out = []
    for i in range(len(data)):
        out += decoder.feed(data[i:i + 1])
    assert [l.text for l in out[0].lines] == [l.text for l in whole.lines] and out[0].qr == whole.qr


def test_status_reports_paper_out(emulator):
    printer = Printer(emulator.path)
    assert printer.status() == {"online": True, "paper": True}
    emulator.paper = False
    assert printer.status() == {"online": False, "paper": False}


def test_missing_printer_is_a_clear_error(tmp_path):
    printer = Printer(str(tmp_path / "ttyUSB9"))
    with pytest.raises(PrinterError) as err:
        printer.print(b"x")
    assert err.value.code == "printer_unavailable" and "打印机" in err.value.text()


def test_printer_silent_on_status_times_out():
    master, slave = os.openpty()
    try:
        printer = Printer(os.ttyname(slave), status_timeout=0.1)
        with pytest.raises(PrinterError):
            printer.status()
    finally:
        os.close(master)
        os.close(slave)


def test_port_urls():
    assert parse_url("/dev/ttyUSB0") == ("serial", "/dev/ttyUSB0", 9600)
    assert parse_url("serial:///dev/ttyS0?baud=115200") == ("serial", "/dev/ttyS0", 115200)
    assert parse_url("lp:///dev/usb/lp0") == ("lp", "/dev/usb/lp0", 9600)
    assert parse_url("socket://10.0.0.5:9100")[0] == "url"


def test_names_are_masked():
    assert [mask_name(n) for n in ("张三", "王建国", "李家农场", "临平区绿野水稻专业合作社", "")] == \
        ["张*", "王*国", "李**场", "临平********作社", "—"]
    assert receipt.amount_text(23000, "g") == "23 kg" and receipt.amount_text(1500, "mL") == "1.5 L"
    assert receipt.amount_text(950, "mL") == "950 mL"
    assert receipt.time_text(1764300000123) == "2025-11-28 11:20:00"
