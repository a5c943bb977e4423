"""The on-site inspection sheet (现场检查记录表) of a case: what the desk knows
in words and local times, the buyer masked, and the blanks an inspector fills
in at the shop; a real PDF with the Chinese embedded, read back with pypdf."""

from __future__ import annotations

import io

import pypdf
import pytest

from gateway.enforcement import registry
from gateway.store import connect, users, violations
from gateway.supervision import cases, grid, inspection_sheet
from gateway.supervision.rules import config
from tests.support.store_backends import backend_db  # noqa: F401 - a fixture
from tests.support.supervision import GRID, VILLAGE1

NOW = 1748746800000          # 2025-06-01 03:00 UTC: 11:00 in Beijing
CFG = config.load()


@pytest.fixture
def conn(backend_db):
    conn = connect(backend_db)
    grid.import_grid(conn, GRID)
    registry.import_subjects(conn, [{"id": "S1", "status": "active", "town": "330113001", "name": "王建国",
                                     "id_number": "330184196503121234", "plots": []}], NOW)
    users.add_user(conn, "v1", "village", VILLAGE1, "password-1", NOW)
    yield conn
    conn.close()


def text_of(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)


def test_the_sheet_says_what_the_desk_knows_and_leaves_room_for_the_visit(conn):
    violations.report(conn, NOW, "banned_product_sold", "a", subject="S1", shop="SHOP1", terminal="TA", seq=17)
    violations.report(conn, NOW + 60_000, "sale_outside_hours", "b", subject="S1", shop="SHOP1", terminal="TA", seq=18)
    cases.file_new_violations(conn, NOW + 60_000, CFG)
    case_id = conn.execute("SELECT id FROM cases").fetchone()[0]
    sheet = inspection_sheet.gather(conn, case_id, NOW + 120_000)
    assert [f["record"] for f in sheet["findings"]] == ["TA-000017", "TA-000018"]
    text = text_of(inspection_sheet.render(sheet))
    assert "农资经营现场检查记录表" in text and "案件编号 %d" % case_id in text
    assert "东湖农资店" in text and "临平街道" in text                          # the shop and its area by name
    assert "2025-06-01 11:00" in text and "1748746800000" not in text         # Beijing time, not epoch ms
    assert "TA-000017" in text and "banned_product_sold" not in text          # findings in words
    assert "王*国" in text and "王建国" not in text and "330184" not in text  # masked; no ID number
    assert "立案" in text and "指派" in text and "v1" in text                 # the history
    for blank in ("检查时间", "现场检查情况", "当场整改", "未发现违规", "被检查门店负责人（签字）"):
        assert blank in text


def test_an_unknown_case_has_no_sheet(conn):
    assert inspection_sheet.gather(conn, 999, NOW) is None


def test_without_a_chinese_font_it_says_which_package(conn, monkeypatch, tmp_path):
    monkeypatch.setattr(inspection_sheet, "FONT_CANDIDATES", (tmp_path / "none.ttc",))
    with pytest.raises(inspection_sheet.SheetError) as err:
        inspection_sheet.find_font()
    assert err.value.code == "sheet_font_missing" and "fonts-wqy-microhei" in err.value.detail
