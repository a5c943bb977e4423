"""Receipts: what the farmer takes home, laid out for a 58 mm (32 column) or
80 mm (48 column) ESC/POS printer, in Chinese.

A receipt is printed only for a record already committed to the ledger, and it
names that record (`record_id`: terminal and seq, also as a QR code), so an
inspector holding the paper can find the exact ledger row, and a farmer's
receipt can never show a sale the ledger does not have. Everything on it is a
pure function of the facts passed in (time included), so the same sale prints
the same bytes: the tests compare them exactly.

Personal data is minimised: the subject's name is masked (`protocols.display.mask_name`) and no
card number or ID number is printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hardware.printer.escpos import Document
from protocols.card import iso_from_days
# the kiosk calls these as receipt.*; they live below, shared with the supervision desk
from protocols.display import amount_text, category_name, category_unit, mask_name  # noqa: F401

CST_OFFSET_MS = 8 * 3600 * 1000   # China Standard Time, no daylight saving


def time_text(time_ms: int) -> str:
    """Local (China Standard Time) date and time, computed without the host's
    time zone database: a Pi with a wrong TZ must still print the right hour."""
    seconds = (time_ms + CST_OFFSET_MS) // 1000
    days, rest = divmod(seconds, 86400)
    return "%s %02d:%02d:%02d" % (iso_from_days(days), rest // 3600, rest // 60 % 60, rest % 60)


def record_id(terminal: str, seq: int) -> str:
    return "%s-%06d" % (terminal, seq)


@dataclass
class ReceiptItem:
    name: str
    packs: int
    pack_text: str = ""        # e.g. "50 kg/袋"
    approved: bool = True
    reason: str = ""           # plain words when refused
    line_fen: int | None = None  # what the line cost; None: refused or not priced


@dataclass
class SaleReceipt:
    shop: str
    terminal: str
    seq: int
    time_ms: int
    clerk: str
    subject_name: str          # already masked
    subject_id: str
    items: list[ReceiptItem]
    mode: str = "online"
    remaining: list[tuple[str, str]] = field(default_factory=list)   # (category name, amount text)
    kind: str = "sale"         # sale or return
    deposit_fen: int = 0       # a sale: deposit charged on its pesticide packs; a return: paid back
    total_fen: int | None = None  # a sale: what the buyer paid (None: the shop set no prices)
    links: list[int] = field(default_factory=list)


def yuan(fen: int) -> str:
    return "%d.%02d 元" % (fen // 100, fen % 100)


def render(receipt: SaleReceipt, columns: int = 32) -> bytes:
    """ESC/POS bytes of one receipt, ending with the cut."""
    doc = Document(columns)
    rid = record_id(receipt.terminal, receipt.seq)
    title = "农药包装回收凭证" if receipt.kind == "return" else "农资实名购买小票"
    doc.align("center").bold().size(2, 2).text(title).size(1, 1).bold(False)
    doc.text(receipt.shop)
    if receipt.kind == "sale" and receipt.mode == "offline":
        doc.bold().text("【离线销售 待上传】").bold(False)
    doc.align("left").rule()
    doc.text("单号：" + rid)
    doc.text("时间：" + time_text(receipt.time_ms))
    doc.text("店员：" + receipt.clerk)
    doc.text("购买主体：%s（%s）" % (receipt.subject_name, receipt.subject_id))
    doc.rule()
    if receipt.kind == "return":
        doc.text("回收包装：%d 件" % len(receipt.items))
        for item in receipt.items:
            doc.text(item.name)
            if item.pack_text:
                doc.text("  " + item.pack_text)
        if receipt.links:
            doc.text("对应销售单：" + "、".join(record_id(receipt.terminal, s) for s in receipt.links))
        doc.bold().pair("押金/补贴", yuan(receipt.deposit_fen)).bold(False)
    else:
        for item in receipt.items:
            doc.text(item.name)
            status = "x%d" % item.packs if item.approved else "未售"
            if item.line_fen is not None:
                status += "  " + yuan(item.line_fen)
            doc.pair("  " + item.pack_text, status)
            if not item.approved and item.reason:
                doc.text("  " + item.reason)
        if receipt.deposit_fen:
            doc.pair("包装押金（退瓶可退）", yuan(receipt.deposit_fen))
        if receipt.total_fen is not None:
            doc.bold().pair("合计", yuan(receipt.total_fen)).bold(False)
        if receipt.remaining:
            doc.rule()
            doc.text("剩余定额：")
            for name, amount in receipt.remaining:
                doc.pair("  " + name, amount)
    doc.rule()
    doc.align("center").qr(rid, module=5).text(rid)
    doc.text("凭此单可查询台账记录")
    doc.feed(2).cut()
    return doc.bytes()
