"""Each list's columns as a file shows them (gateway/api/table_export.py):
Chinese headings, the names and words the screen shows, local times in the
district's zone; ids kept beside the names so a row can be found again."""

from __future__ import annotations

import time

from protocols import reasons

STATE_ZH = {"open": "待指派", "assigned": "已指派", "inspected": "已核查", "closed": "已结案"}
LEVEL_ZH = {"village": "村社", "town": "镇街", "district": "区"}
SEVERITY_ZH = {1: "严重", 2: "较重", 3: "一般", 4: "关注"}
TYPE_ZH = {"sale": "销售", "refusal": "拒售", "void": "作废"}
IDENTITY_ZH = {"card": "刷卡", "face": "刷脸", "card+face": "刷卡并刷脸", "override": "店员代为确认"}
MODE_ZH = {"online": "联网", "offline": "离线"}


def local(ms: int | None, tz_minutes: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ms / 1000 + tz_minutes * 60)) if ms else ""


def codes_text(codes: str | None) -> str:
    return "、".join(reasons.text(c, "zh") for c in (codes or "").split(",") if c)


CASE_COLUMNS = [("severity", "严重程度"), ("id", "案件编号"), ("state", "状态"), ("codes", "违规类型"),
                ("shop_name", "门店"), ("shop", "门店编号"), ("subject_name", "主体"), ("subject", "主体编号"),
                ("town_name", "镇街"), ("village_name", "村社"), ("level", "处理层级"), ("assignee_name", "负责人"),
                ("opened", "立案时间"), ("deadline", "期限"), ("overdue", "已超期")]


def case_rows(cases: list[dict], tz: int) -> list[dict]:
    return [{**c, "severity": SEVERITY_ZH.get(c.get("severity"), ""), "state": STATE_ZH.get(c["state"], c["state"]),
             "codes": codes_text(c["codes"]), "level": LEVEL_ZH.get(c["level"], c["level"]),
             "opened": local(c["opened"], tz), "deadline": local(c["deadline"], tz)} for c in cases]


GROUP_COLUMNS = [("severity", "严重程度"), ("code", "违规类型"), ("sentence", "说明"), ("shop_name", "门店"),
                 ("subject_name", "主体"), ("subject", "主体编号"), ("record", "记录"), ("n", "次数"),
                 ("first_time", "首次"), ("last_time", "最近"), ("case_id", "案件编号")]


def group_rows(groups: list[dict], tz: int) -> list[dict]:
    return [{**g, "severity": SEVERITY_ZH.get(g["severity"], ""), "code": reasons.text(g["code"], "zh"),
             "sentence": (g.get("sentence") or {}).get("zh"), "shop_name": g.get("shop_name") or g.get("shop"),
             "record": f"{g['terminal']} #{g['seq']}" if g.get("terminal") else "",
             "first_time": local(g["first_time"], tz), "last_time": local(g["last_time"], tz)} for g in groups]


VIOLATION_COLUMNS = [("time", "时间"), ("code", "违规类型"), ("sentence", "说明"), ("shop_name", "门店"),
                     ("shop", "门店编号"), ("subject_name", "主体"), ("subject", "主体编号"), ("record", "记录"),
                     ("case_id", "案件编号"), ("id", "违规编号")]


def violation_rows(found: list[dict], tz: int) -> list[dict]:
    return [{**v, "time": local(v["time"], tz), "code": reasons.text(v["code"], "zh"),
             "sentence": (v.get("sentence") or {}).get("zh"),
             "record": f"{v['terminal']} #{v['seq']}" if v.get("terminal") else ""} for v in found]


def _items(items: list[dict]) -> str:
    return "；".join(f"{i.get('name') or i.get('product')} ×{i.get('packs')}" for i in items)


SALE_COLUMNS = [("time", "时间"), ("record", "记录"), ("type", "类型"), ("shop_name", "门店"), ("subject_name", "主体"),
                ("subject", "主体编号"), ("items", "商品"), ("reasons", "拒售原因"), ("identity", "身份核验"),
                ("mode", "方式")]


def sale_rows(sales: list[dict], tz: int) -> list[dict]:
    return [{**r, "time": local(r["time"], tz), "record": f"{r['terminal']} #{r['seq']}",
             "type": TYPE_ZH.get(r["type"], r["type"]), "items": _items(r["items"]),
             "reasons": "、".join(reasons.text(c, "zh") for c in r.get("reasons") or [] if isinstance(c, str)),
             "identity": IDENTITY_ZH.get(r.get("identity"), r.get("identity")),
             "mode": MODE_ZH.get(r.get("mode"), r.get("mode"))} for r in sales]


TERMINAL_COLUMNS = [("id", "终端"), ("shop_name", "门店"), ("shop", "门店编号"), ("state", "状态"),
                    ("last_seen", "最近消息"), ("backlog", "待上传"), ("versions", "版本"), ("skew", "时钟偏差（秒）")]


def terminal_rows(fleet: list[dict], tz: int) -> list[dict]:
    return [{**t, "state": "在线" if t["state"] == "online" else "离线", "last_seen": local(t["last_seen"], tz),
             "versions": ", ".join(f"{k} {v}" for k, v in (t.get("versions") or {}).items()),
             "skew": "" if t.get("skew_ms") is None else f"{t['skew_ms'] / 1000:.1f}"} for t in fleet]
