"""Any list on the supervision desk as a file staff can open: CSV (UTF-8 with
a BOM, so Excel on a Chinese Windows reads the characters right) or Excel
(.xlsx, openpyxl's write-only mode: rows stream into the file, a long list
never sits in memory as cell objects).

Cells are what the screen shows (names, Chinese words, local times), under
Chinese headings. A cell whose text a spreadsheet would run as a formula
(starting with = + - @, or a tab or carriage return) is written with a leading
apostrophe: a subject name or a note typed by anyone must never become a
formula on an official's machine (CSV/formula injection)."""

from __future__ import annotations

import csv
import io
import itertools
from typing import Iterable

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
XLSX_ROWS = 1_048_576   # the most rows one Excel sheet holds, the heading's included


class TooManyRows(ValueError):
    """A list longer than one Excel sheet: refused whole, never cut short."""
MEDIA = {"csv": "text/csv; charset=utf-8",
         "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def safe(value) -> str | int:
    """The cell for `value`: numbers stay numbers, text that would start a formula is quoted."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, int):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_bytes(columns: list[tuple[str, str]], rows: Iterable[dict]) -> bytes:
    """`columns`: (row key, Chinese heading) in order."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([heading for _, heading in columns])
    for row in rows:
        writer.writerow([safe(row.get(key)) for key, _ in columns])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def xlsx_bytes(columns: list[tuple[str, str]], rows: Iterable[dict], title: str) -> bytes:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    rows = list(rows)                # the lists' queries return lists; counted before anything is written
    if len(rows) + 1 > XLSX_ROWS:
        raise TooManyRows(f"{len(rows)} rows, more than the {XLSX_ROWS - 1} one Excel sheet holds: "
                          "narrow the filters, or export CSV, which has no limit")
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title[:31])
    rows = iter(rows)
    first = [[safe(row.get(key)) for key, _ in columns] for row in itertools.islice(rows, 200)]
    for i, (_, heading) in enumerate(columns):     # widths from the first screenful, CJK counted double
        width = max([_width(heading)] + [_width(row[i]) for row in first])
        sheet.column_dimensions[get_column_letter(i + 1)].width = min(60, max(8, width + 2))
    sheet.freeze_panes = "A2"
    header = []
    for _, heading in columns:
        cell = WriteOnlyCell(sheet, value=heading)
        cell.font = Font(bold=True)
        header.append(cell)
    sheet.append(header)
    for row in first:
        sheet.append(row)
    for row in rows:
        sheet.append([safe(row.get(key)) for key, _ in columns])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _width(value) -> int:
    return sum(2 if ord(c) > 0x2E80 else 1 for c in str(value))


def export(kind: str, columns: list[tuple[str, str]], rows: Iterable[dict], title: str) -> tuple[bytes, str]:
    """(file bytes, media type) for `kind` csv or xlsx: every row, or
    TooManyRows for an Excel file that could not hold them all."""
    if kind == "csv":
        return csv_bytes(columns, rows), MEDIA["csv"]
    if kind == "xlsx":
        return xlsx_bytes(columns, rows, title), MEDIA["xlsx"]
    raise ValueError(f"export format {kind!r}: csv or xlsx")
