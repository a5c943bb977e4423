"""The ledger PDF's layout, pure: row views in, PDF out, read back with pypdf.
(The export through the kiosk and its HTTP API: tests/test_terminal_ui_api.py.)"""

from __future__ import annotations

import io

import pypdf
import pytest

from firmware import ledger_pdf

pytestmark = pytest.mark.timeout(60)

HEADER = ledger_pdf.Header(shop_name="塘栖农资店", shop="shop-T1", terminal="T1", exported_ms=1764300000000,
                           first_seq=1, last_seq=2)


def row(seq, **extra):
    base = {"seq": seq, "time": "2025-11-28 11:20:00", "type": "sale", "mode": "online", "subject": "S-0001",
            "clerk": "c1", "items": ["尿素 x1"], "reasons": [], "links": [], "codes": [], "deposit_fen": None,
            "voids": None, "uploaded": True}
    base.update(extra)
    return base


def pages_of(header, rows):
    return [p.extract_text() for p in pypdf.PdfReader(io.BytesIO(ledger_pdf.render(header, rows))).pages]


def test_a_return_taller_than_a_page_continues_on_the_next_with_its_number():
    codes = ["%032d" % i for i in range(120)]
    pages = pages_of(HEADER, [row(1), row(2, type="return", mode=None, items=["回收包装 x120"], codes=codes,
                                     links=[1], deposit_fen=6000)])
    text = "\n".join(pages)
    assert len(pages) >= 2 and all(f"/ 共 {len(pages)} 页" in p for p in pages)
    words = text.split()
    assert all(code in words for code in codes)                      # each code whole, none lost
    assert "T1-000002\n（续）" in pages[-1]
    assert "60.00 元" in text and "已上传" in text


def test_an_empty_ledger_says_so_and_control_characters_never_reach_the_page():
    empty = ledger_pdf.Header("塘栖农资店", "shop-T1", "T1", 1764300000000, None, None)
    assert "台账中没有记录" in pages_of(empty, [])[0]
    text = pages_of(HEADER, [row(1, clerk="c\x1b@1", subject="S\x00-1")])[0]
    assert "c@1" in text and "S-1" in text and "\x1b" not in text and "\x00" not in text


def test_record_numbers_of_a_long_terminal_id_are_never_broken_across_lines():
    """A terminal id longer than "T1" (the district's scheme can be long): every
    record number, in its own column, in a void's and in a return's links, is
    whole on its line."""
    terminal = "T-330113-LINPING-0042"
    header = ledger_pdf.Header("塘栖农资店", "shop-T1", terminal, 1764300000000, 1, 3)
    text = "\n".join(pages_of(header, [row(1), row(2, type="void", voids=1, items=[]),
                                       row(3, type="return", mode=None, links=[1], codes=["%032d" % 7])]))
    lines = text.split("\n")
    for seq in (1, 2, 3):
        assert any(f"{terminal}-{seq:06d}" in line for line in lines), seq
    assert sum(line.count(f"{terminal}-000001") for line in lines) >= 3      # the row, the void, the link
    assert not any(line.strip() == "0042-000001" or line.strip().endswith(f"{terminal}-") for line in lines)


def test_the_font_is_looked_for_where_debian_installs_it():
    assert ledger_pdf.find_font().name == "wqy-microhei.ttc"
    with pytest.raises(ledger_pdf.LedgerPdfError) as err:
        ledger_pdf.find_font(["/nonexistent.ttc"])
    assert err.value.code == "ledger_pdf_font_missing" and "fonts-wqy-microhei" in err.value.text()
