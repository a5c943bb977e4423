"""The shop's ledger (台账) as a PDF an inspector can read, print and file.

Pure layout: header facts and ledger rows in, PDF bytes out. The rows are the
kiosk's ledger row views (`terminal_ui.views.row_view`: the same values, and so the same
personal data, as the CSV export: the subject is its registry id, never a name
or an ID number), consumed one at a time from an iterator, so the caller can
read a two-year ledger page by page from SQLite. The PDF library (fpdf2) keeps
the finished pages in memory until the file is written (about 1.3 kB per
record: 30 000 records, 1431 pages, ~40 MB); the rows themselves are never all
held at once.

Why fpdf2: pure Python (runs the same on the Pi's aarch64 as here), loads a
TrueType *collection* (`collection_font_number`), which is how Debian ships
WenQuanYi Micro Hei, embeds only the glyphs used (the ~5 MB font costs tens of
kB in the file), writes a ToUnicode map so the Chinese can be searched and
extracted, and substitutes the total page count ("共 M 页") when the document
is closed, so one pass over the ledger is enough.

The table is laid out here rather than with `FPDF.table()`, which keeps every
row of a table until it is rendered and measures each cell several times: this
lays out a row, draws it, and forgets it (3000 records: 1 s against 9 s, which
matters on a Pi with years of records). CJK text wraps between any two
characters, ASCII words (codes, record ids) only at spaces unless a word alone
is wider than its column; a row taller than a page (a return of hundreds of
containers) continues on the next page.

Chinese needs a CJK font embedded in the file: `fonts-wqy-microhei` (Debian,
Raspberry Pi OS), installed by firmware/deploy/README.md step 1. Without it the
export fails with `ledger_pdf_font_missing`, naming the package.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from firmware import receipt as _receipt
from protocols import reasons

FONT_PACKAGE = "fonts-wqy-microhei"
FONT_CANDIDATES = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),   # fonts-wqy-microhei
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),     # fonts-wqy-zenhei, if that is what is installed
)

reasons.register({
    "ledger_pdf_font_missing": (
        "导出 PDF 需要中文字体，请安装 %s" % FONT_PACKAGE,
        "PDF export needs a Chinese font: install the %s package" % FONT_PACKAGE,
    ),
    "ledger_pdf_busy": ("正在导出台账，请稍候", "The ledger is already being exported: please wait"),
})


class LedgerPdfError(reasons.ReasonError):
    """The PDF cannot be made; `code` says why (shown to the clerk)."""


@dataclass
class Header:
    """What the title block says. Times are epoch milliseconds, printed in China
    Standard Time like the receipts, whatever the Pi's time zone."""
    shop_name: str
    shop: str                 # the shop id from the terminal config
    terminal: str
    exported_ms: int
    first_seq: int | None     # None: the ledger is empty
    last_seq: int | None


# (row view key = CSV column, heading zh, width in mm). A4 landscape: 277 mm
# between the margins. Widths fit one record id, one "YYYY-MM-DD" and one
# 32-digit label code per line at the body size.
COLUMNS = (
    ("seq", "单号", 18), ("time", "时间", 16), ("type", "类型", 9), ("mode", "方式", 9),
    ("subject", "购买主体", 18), ("clerk", "店员", 11), ("items", "商品", 45), ("reasons", "原因", 30),
    ("voids", "作废单号", 17), ("links", "对应销售", 17), ("codes", "包装码", 47), ("total_fen", "金额", 14),
    ("deposit_fen", "押金", 14), ("uploaded", "上传", 12),
)
TYPE_ZH = {"sale": "销售", "refusal": "拒售", "void": "作废", "return": "回收", "heartbeat": "心跳", "event": "事件"}
MODE_ZH = {"online": "联网", "offline": "离线"}

MARGIN = 10.0           # mm
BODY_PT = 7.0
KEY_PT = 6.0            # the CSV column name under each heading
LINE = 3.2              # mm per text line at BODY_PT
PAD_X, PAD_Y = 1.0, 0.8
FOOTER_H = 8.0
HEAD_H = 2 * LINE + 2 * PAD_Y      # the column headings: zh over the CSV column name
TITLE_H = {1: 24.0, 2: 5.0}        # above the headings: page 1's title block, later pages' running head
OFFLINE_RGB = (176, 58, 46)
PAGES_ALIAS = "{pages}"  # fpdf2 writes the page count here on closing; 7 characters leave room for 5 digits
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_TOKEN = re.compile(r"[\x21-\x7e]+| +|\n|.", re.S)


def find_font(candidates: Iterable[Path] | None = None) -> Path:
    candidates = tuple(candidates if candidates is not None else FONT_CANDIDATES)
    for path in candidates:
        if Path(path).is_file():
            return Path(path)
    raise LedgerPdfError("ledger_pdf_font_missing",
                         "none of %s exists: apt install %s" % (", ".join(map(str, candidates)), FONT_PACKAGE))


RECORD_ID_KEYS = ("seq", "voids", "links")
ITEMS_MIN = 30.0        # mm: the items column gives up at most this much room to record numbers


def fitted_columns(terminal: str, width_of) -> tuple:
    """COLUMNS with the record-number columns wide enough for one whole record
    number of this terminal (`width_of(text)` in mm at the body size): a number
    broken over two lines cannot be found or typed from a printed page, and a
    terminal id can be longer than the "T001" the widths were set for. The room
    comes out of the items column, which wraps at word boundaries anyway."""
    need = width_of(record_id(terminal, 999999)) + 2 * PAD_X + 0.5
    cols = [list(c) for c in COLUMNS]
    extra = 0.0
    for col in cols:
        if col[0] in RECORD_ID_KEYS and col[2] < need:
            extra += need - col[2]
            col[2] = need
    items = next(c for c in cols if c[0] == "items")
    items[2] = max(ITEMS_MIN, items[2] - extra)
    return tuple(tuple(c) for c in cols)


def record_id(terminal: str, seq: int | None) -> str:
    return _receipt.record_id(terminal, seq) if seq else ""


def cells(row: dict, terminal: str) -> list[str]:
    """One row view as the texts of the table's cells, in COLUMNS order; lists
    one entry per line."""
    rid = lambda seq: record_id(terminal, int(seq))                     # noqa: E731
    fen, total = row.get("deposit_fen"), row.get("total_fen")
    values = {
        "seq": rid(row["seq"]),
        "time": row.get("time") or "",
        "type": TYPE_ZH.get(row.get("type"), row.get("type") or ""),
        "mode": MODE_ZH.get(row.get("mode"), row.get("mode") or ""),
        "subject": row.get("subject") or "",
        "clerk": row.get("clerk_name") or row.get("clerk") or "",
        "items": "\n".join(row.get("items") or []),
        "reasons": "\n".join(reasons.text(code) for code in row.get("reasons") or []),
        "voids": rid(row["voids"]) if row.get("voids") else "",
        "links": "\n".join(rid(s) for s in row.get("links") or []),
        "codes": "\n".join(row.get("codes") or []),
        "total_fen": _receipt.yuan(total) if total is not None else "",
        "deposit_fen": _receipt.yuan(fen) if fen is not None else "",
        "uploaded": "已上传" if row.get("uploaded") else "待上传",
    }
    return [_CONTROL.sub("", str(values[key])) for key, _, _ in COLUMNS]


class _Wrapper:
    """Greedy line breaking with a per-character width cache: the font's own
    `get_string_width` is exact but costs a call per string, and a ledger has
    tens of thousands of short strings made of the same few hundred characters."""

    def __init__(self, pdf):
        self.pdf = pdf
        self.widths: dict[str, float] = {}

    def width(self, text: str) -> float:
        total = 0.0
        widths = self.widths
        for ch in text:
            w = widths.get(ch)
            if w is None:
                w = widths[ch] = self.pdf.get_string_width(ch)
            total += w
        return total

    def lines(self, text: str, room: float) -> list[str]:
        out: list[str] = []
        for para in text.split("\n"):
            line, used = "", 0.0
            for token in _TOKEN.findall(para):
                w = self.width(token)
                if used + w <= room:
                    if line or not token.isspace():
                        line += token
                        used += w
                elif token.isspace():
                    out.append(line.rstrip())
                    line, used = "", 0.0
                elif w > room:                        # a word wider than the column: break it anywhere
                    for ch in token:
                        cw = self.width(ch)
                        if used + cw > room and line:
                            out.append(line.rstrip())
                            line, used = "", 0.0
                        line += ch
                        used += cw
                else:
                    if line:
                        out.append(line.rstrip())
                    line, used = token, w
            out.append(line.rstrip())
        return out


def render(header: Header, rows: Iterable[dict], font: Path | None = None) -> bytes:
    """The PDF of `rows` (ledger row views in seq order) under `header`."""
    font = Path(font) if font else find_font()
    if not font.is_file():
        raise LedgerPdfError("ledger_pdf_font_missing", "%s missing: apt install %s" % (font, FONT_PACKAGE))
    # Imported here: fpdf2 (with fontTools) takes a noticeable part of a second
    # to import on a Pi, and only this export needs it, not every agent start.
    from fpdf import FPDF

    exported = _receipt.time_text(header.exported_ms)
    if header.first_seq:
        span = "单号 %s 至 %s，共 %d 条" % (record_id(header.terminal, header.first_seq),
                                         record_id(header.terminal, header.last_seq),
                                         header.last_seq - header.first_seq + 1)
    else:
        span = "台账中没有记录"
    shop = header.shop_name or header.shop

    class Doc(FPDF):
        def header(self):
            self.set_text_color(0)
            if self.page_no() == 1:
                self.set_font("cjk", size=16)
                self.text(MARGIN, MARGIN + 6, "农资经营台账")
                self.set_font("cjk", size=9)
                self.text(MARGIN, MARGIN + 12, "门店：%s　　门店编号：%s　　终端编号：%s" % (shop, header.shop, header.terminal))
                self.text(MARGIN, MARGIN + 17, "导出时间：%s（北京时间）　　记录范围：%s" % (exported, span))
                self.set_font("cjk", size=7)
                self.set_text_color(90)
                self.text(MARGIN, MARGIN + 21.5, "购买主体以主体编号登记（不含姓名、证件号）；时间为北京时间；"
                          "单号即小票上的单号；“上传”栏表示该记录是否已上报监管平台。")
                top = MARGIN + TITLE_H[1]
            else:
                self.set_font("cjk", size=8)
                self.set_text_color(90)
                self.text(MARGIN, MARGIN + 3, "农资经营台账　%s　终端 %s　导出时间 %s" % (shop, header.terminal, exported))
                top = MARGIN + TITLE_H[2]
            self.set_text_color(0)
            self.set_font("cjk", size=BODY_PT)
            self.set_fill_color(225)
            x = MARGIN
            for key, zh, width in columns:
                self.rect(x, top, width, HEAD_H, style="DF")
                self.text(x + PAD_X, top + PAD_Y + LINE * 0.78, zh)
                self.set_font_size(KEY_PT)
                self.set_text_color(110)
                self.text(x + PAD_X, top + PAD_Y + LINE * 1.78, key)
                self.set_text_color(0)
                self.set_font_size(BODY_PT)
                x += width
            self.set_y(top + HEAD_H)

        def footer(self):
            self.set_font("cjk", size=8)
            self.set_text_color(0)
            self.set_y(-(MARGIN + 1))
            self.cell(0, 4, "第 %d 页 / 共 %s 页" % (self.page_no(), PAGES_ALIAS), align="C")
            self.set_x(MARGIN)
            self.cell(0, 4, "终端 %s 台账" % header.terminal, align="R")

    pdf = Doc(orientation="L", unit="mm", format="A4")
    pdf.set_margins(MARGIN, MARGIN, MARGIN)
    pdf.set_auto_page_break(False)
    pdf.add_font("cjk", fname=str(font), collection_font_number=0)
    pdf.set_font("cjk", size=BODY_PT)
    pdf.alias_nb_pages(PAGES_ALIAS)
    pdf.set_title("农资经营台账 %s %s" % (shop, header.terminal))
    pdf.set_author(shop)
    pdf.set_creator("agri-quota terminal")
    pdf.set_creation_date(datetime.fromtimestamp(header.exported_ms / 1000, timezone.utc))
    pdf.set_line_width(0.15)
    pdf.set_draw_color(120)
    wrapper = _Wrapper(pdf)
    columns = fitted_columns(header.terminal, wrapper.width)
    pdf.add_page()
    bottom = pdf.h - MARGIN - FOOTER_H
    fresh = bottom - (MARGIN + TITLE_H[2] + HEAD_H)      # room for rows on a page after the first
    mode_col = [key for key, _, _ in COLUMNS].index("mode")
    rows_on_page = 0

    for row in rows:
        texts = cells(row, header.terminal)
        lines = [wrapper.lines(text, width - 2 * PAD_X) for text, (_, _, width) in zip(texts, columns)]
        red = row.get("mode") == "offline"
        done = 0
        total = max(len(col) for col in lines)
        while done < total:
            fit = int((bottom - pdf.get_y() - 2 * PAD_Y) // LINE)
            if rows_on_page and (fit < total - done) and (total - done) * LINE + 2 * PAD_Y <= fresh:
                fit = 0                      # the row fits a fresh page whole: keep it together
            if fit <= 0:
                pdf.add_page()
                rows_on_page = 0
                continue
            take = min(fit, total - done)
            top = pdf.get_y()
            height = take * LINE + 2 * PAD_Y
            x = MARGIN
            for i, (col, (_, _, width)) in enumerate(zip(lines, columns)):
                pdf.rect(x, top, width, height)
                if red and i == mode_col:
                    pdf.set_text_color(*OFFLINE_RGB)
                part = col[done:done + take]
                if done and i == 0:          # a row continued from the previous page says whose it is
                    part = [col[0], "（续）"][:take]
                for n, text in enumerate(part):
                    if text:
                        pdf.text(x + PAD_X, top + PAD_Y + LINE * (n + 0.78), text)
                if red and i == mode_col:
                    pdf.set_text_color(0)
                x += width
            pdf.set_y(top + height)
            rows_on_page += 1
            done += take
    return bytes(pdf.output())
