"""Lists as CSV and Excel files: Chinese headings, values as shown, numbers as
numbers, and no cell a spreadsheet would run as a formula."""

from __future__ import annotations

import csv
import io

import openpyxl
import pytest

from gateway.api import table_export

COLUMNS = [("case", "案件编号"), ("shop", "门店"), ("notes", "备注"), ("count", "次数")]
ROWS = [{"case": 1, "shop": "东湖农资店", "notes": "=HYPERLINK(\"http://evil\",\"点我\")", "count": 3},
        {"case": 2, "shop": "西湖农资店", "notes": "+86 138", "count": None},
        {"case": 3, "shop": "@SUM(A1)", "notes": "-1", "count": 0}]


def test_csv_has_a_bom_chinese_headings_and_defused_formulas():
    data = table_export.csv_bytes(COLUMNS, ROWS)
    assert data.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0] == ["案件编号", "门店", "备注", "次数"]
    assert rows[1] == ["1", "东湖农资店", "'=HYPERLINK(\"http://evil\",\"点我\")", "3"]
    assert rows[2][2] == "'+86 138" and rows[2][3] == "" and rows[3][1] == "'@SUM(A1)" and rows[3][2] == "'-1"


def test_xlsx_opens_with_the_same_cells_numbers_kept_and_no_formula():
    data = table_export.xlsx_bytes(COLUMNS, iter(ROWS * 150), "案件")    # a generator, longer than the sample
    book = openpyxl.load_workbook(io.BytesIO(data))
    sheet = book["案件"]
    values = list(sheet.values)
    assert values[0] == ("案件编号", "门店", "备注", "次数") and len(values) == 1 + 450
    assert values[1] == (1, "东湖农资店", "'=HYPERLINK(\"http://evil\",\"点我\")", 3)
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)
    assert sheet.freeze_panes == "A2" and sheet.column_dimensions["B"].width >= 12


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError):
        table_export.export("pdf", COLUMNS, ROWS, "x")


def test_an_excel_file_holds_every_row_or_is_refused_never_cut_short(monkeypatch):
    monkeypatch.setattr(table_export, "XLSX_ROWS", 1 + 250)          # a sheet of 250 rows under its heading
    book = openpyxl.load_workbook(io.BytesIO(table_export.xlsx_bytes(COLUMNS, ROWS * 83 + ROWS[:1], "案件")))
    assert len(list(book["案件"].values)) == 1 + 250
    with pytest.raises(table_export.TooManyRows, match="CSV"):
        table_export.xlsx_bytes(COLUMNS, iter(ROWS * 84), "案件")     # 252 rows
    assert len(table_export.csv_bytes(COLUMNS, ROWS * 84).decode("utf-8-sig").splitlines()) == 1 + 252
