"""现场检查记录表: the on-site inspection sheet of a case, as a PDF an inspector
prints and takes to the shop.

The top half says what the desk knows (the shop, the findings with their
local times and record numbers, the buyer by registry id and masked name, the
case's history); the bottom half is left blank for the visit, in the order an
inspection record is filled in by hand: when and who, what was found, the
outcome (the three results the desk records, gateway/supervision/cases.py
RESULTS), and the signatures of the inspector and of the shop's responsible
person. What the inspector writes there is entered on the case page after the
visit; the sheet is the paper trail.

Pure layout over plain data (`gather` reads the case; `render` draws it), in
fpdf2 with a CJK font embedded (fonts-wqy-microhei, as the terminal's ledger
PDF).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from gateway.enforcement import subjects_view
from gateway.store import cases, grid
from protocols import reasons
from protocols.display import mask_name

FONT_PACKAGE = "fonts-wqy-microhei"
FONT_CANDIDATES = (Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
                   Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"))
BEIJING_MS = 8 * 3_600_000
STATE_ZH = {"open": "待指派", "assigned": "待检查", "inspected": "已检查", "closed": "已结案"}
LEVEL_ZH = {"village": "村社", "town": "镇街", "district": "区县"}
ACTION_ZH = {"opened": "立案", "assigned": "指派", "joined": "并案", "escalated": "超期升级", "inspected": "现场检查",
             "photo": "上传照片", "close_proposed": "提议结案", "close_rejected": "驳回结案", "closed": "结案"}
RESULT_ZH = {"violation_found": "发现违规，依法处理", "no_violation_found": "未发现违规",
             "rectified_on_site": "当场整改"}

reasons.register({
    "sheet_font_missing": ("生成检查记录表需要中文字体，请安装 %s" % FONT_PACKAGE,
                           "The inspection sheet needs a Chinese font: install the %s package" % FONT_PACKAGE),
})


class SheetError(reasons.ReasonError):
    pass


def local_time(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime((ms + BEIJING_MS) / 1000)) if ms else "—"


def _area_name(conn, code: str | None) -> str:
    area = grid.area(conn, code) if code else None
    return area["name"] if area else (code or "—")


def gather(conn, case_id: int, now: int) -> dict | None:
    """What the sheet shows of a case (None: no such case). The caller has
    checked that the user may see it."""
    case = cases.get(conn, case_id)
    if case is None:
        return None
    shop = grid.shop(conn, case["shop"])
    entry = subjects_view.lookup(conn, case["subject"]) if case["subject"] else None
    findings = []
    for at, code, terminal, seq in cases.findings(conn, case_id):
        findings.append({"time": local_time(at), "what": reasons.text(code),
                         "record": "%s-%06d" % (terminal, seq) if terminal and seq else (terminal or "—")})
    history = []
    for event in cases.timeline(conn, case_id):
        detail = event["detail"] if isinstance(event["detail"], dict) else json.loads(event["detail"] or "{}")
        note = detail.get("assignee") or RESULT_ZH.get(detail.get("result"), "") or detail.get("notes") or ""
        history.append({"time": local_time(event["time"]), "who": "系统" if event["actor"] == "system" else event["actor"],
                        "what": ACTION_ZH.get(event["action"], event["action"]), "note": str(note)})
    return {
        "case": case_id, "made": local_time(now), "state": STATE_ZH.get(case["state"], case["state"]),
        "level": LEVEL_ZH.get(case["level"], case["level"]), "assignee": case["assignee"] or "（未指派）",
        "deadline": local_time(case["deadline"]),
        "shop": {"name": shop.name if shop else (case["shop"] or "—"), "id": case["shop"] or "—",
                 "town": _area_name(conn, case["town"]), "village": _area_name(conn, case["village"]),
                 "designated": "是" if shop and shop.designated else "否", "hours": (shop.hours if shop else "") or "—"},
        "subject": {"id": case["subject"] or "—", "name": mask_name(entry.get("name")) if entry else "—"},
        "findings": findings, "history": history,
    }


def find_font() -> Path:
    for path in FONT_CANDIDATES:
        if path.is_file():
            return path
    raise SheetError("sheet_font_missing", "apt install %s" % FONT_PACKAGE)


def render(sheet: dict, font: Path | None = None) -> bytes:
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    font = font or find_font()
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_margins(15, 15, 15)
    pdf.set_auto_page_break(True, 15)
    pdf.add_font("cjk", fname=str(font), collection_font_number=0)
    pdf.set_title("现场检查记录表 案件 %d" % sheet["case"])
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin

    def heading(text: str) -> None:
        pdf.ln(2)
        pdf.set_font("cjk", size=11)
        pdf.cell(width, 7, text, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("cjk", size=9)

    def table(headings: tuple, rows: list[tuple], widths: tuple) -> None:
        # headings shaded, not bold: the embedded CJK font has no bold face
        with pdf.table(col_widths=widths, text_align="LEFT", line_height=5.5, first_row_as_headings=True,
                       headings_style=FontFace(emphasis="", fill_color=(232, 238, 232))) as t:
            t.row(headings)
            for row in rows or [("—",) + ("",) * (len(headings) - 1)]:
                t.row([str(cell) for cell in row])

    pdf.set_font("cjk", size=16)
    pdf.cell(width, 10, "农资经营现场检查记录表", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=9)
    pdf.cell(width, 6, "案件编号 %d　·　状态 %s　·　处理层级 %s　·　生成于 %s（北京时间）" % (
        sheet["case"], sheet["state"], sheet["level"], sheet["made"]), align="C", new_x="LMARGIN", new_y="NEXT")
    shop = sheet["shop"]
    heading("一、被检查门店")
    table(("门店名称", "门店编号", "所属镇街", "所属村社", "限用农药定点", "营业时间"),
          [(shop["name"], shop["id"], shop["town"], shop["village"], shop["designated"], shop["hours"])],
          (40, 26, 28, 28, 22, 36))
    heading("二、案件信息")
    table(("涉及购买主体", "负责人", "检查期限"),
          [("%s（%s）" % (sheet["subject"]["name"], sheet["subject"]["id"]), sheet["assignee"], sheet["deadline"])],
          (80, 40, 60))
    heading("三、发现的问题")
    table(("时间", "问题", "终端单号"), [(f["time"], f["what"], f["record"]) for f in sheet["findings"]], (32, 108, 40))
    heading("四、处理经过")
    table(("时间", "操作人", "事项", "说明"),
          [(h["time"], h["who"], h["what"], h["note"]) for h in sheet["history"]], (32, 28, 28, 92))
    heading("五、现场检查（检查人员现场填写）")
    for label in ("检查时间：____年____月____日____时____分", "检查地点：", "检查人员（签字）：                    执法证号："):
        pdf.cell(width, 8, label, new_x="LMARGIN", new_y="NEXT")
    pdf.cell(width, 7, "现场检查情况：", new_x="LMARGIN", new_y="NEXT")
    pdf.rect(pdf.l_margin, pdf.get_y(), width, 36)
    pdf.ln(38)
    pdf.cell(width, 8, "处理结果：" + "　".join("□ " + text for text in RESULT_ZH.values()),
             new_x="LMARGIN", new_y="NEXT")
    pdf.cell(width, 8, "处理意见：", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(10)
    pdf.cell(width, 8, "被检查门店负责人（签字）：                    日期：", new_x="LMARGIN", new_y="NEXT")
    pdf.cell(width, 8, "检查人员（签字）：                                  日期：", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
