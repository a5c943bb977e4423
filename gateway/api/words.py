"""Violations in words: one sentence in Chinese and one in English from a
violation's code and detail, with products, shops and subjects by name and
times in the district's local time (issue 18, item 7: staff read "sold
200克/升百草枯水剂 at 11:01", not `{"products": ["PD20080301"]}` and epoch
milliseconds). Pure: the caller passes a `Names` that resolves ids, so each
sentence is tested with plain values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from protocols import reasons
from protocols.display import category_name, mask_name


@dataclass
class Names:
    product: Callable[[str], str] = lambda reg: reg
    shop: Callable[[str], str] = lambda shop: shop
    subject: Callable[[str], str] = lambda subject: subject
    tz_minutes: int = 480

    def time(self, ms) -> str:
        if not isinstance(ms, int) or isinstance(ms, bool):
            return "—"
        local = datetime.fromtimestamp(ms / 1000, timezone(timedelta(minutes=self.tz_minutes)))
        return local.strftime("%Y-%m-%d %H:%M")


def subject_name(entry: dict | None) -> str | None:
    """The subject's name masked as the counter masks it (张*丰,
    临平********作社: protocols.display.mask_name), enough to tell two cases
    apart on a list, not to find the person; None without a name."""
    name = (entry or {}).get("name")
    return mask_name(name.strip()) if isinstance(name, str) and name.strip() else None


def _list(values, fn, sep: str) -> str:
    return sep.join(fn(v) for v in values if isinstance(v, str)) if isinstance(values, list) else ""


def _pct(ratio) -> str:
    return f"{round(ratio * 100)}%" if isinstance(ratio, (int, float)) else "—"


def _amount(kind, grams) -> tuple[str, str]:
    """Split-purchase totals are g or mL of product summed by kind: fertilizer
    in kg, pesticide in its own base units (a kind may mix g and mL packs, so
    no single unit is claimed)."""
    if not isinstance(grams, (int, float)):
        return "—", "—"
    if kind == "fertilizer":
        return f"{grams / 1000:g} 千克", f"{grams / 1000:g} kg"
    return f"{grams:g} 克或毫升", f"{grams:g} g or mL"


def describe(code: str, detail: dict, names: Names, seq: int | None = None) -> dict[str, str]:
    """`seq`: the violation's record, where a gap starts."""
    d = detail if isinstance(detail, dict) else {}
    zh = en = None
    products_zh = _list(d.get("products"), names.product, "、")
    products_en = _list(d.get("products"), names.product, ", ")
    kind_zh = {"pesticide": "农药", "fertilizer": "化肥"}.get(d.get("kind"), "")
    kind_en = {"pesticide": "pesticide", "fertilizer": "fertilizer"}.get(d.get("kind"), "")
    if code == "banned_product_sold":
        zh, en = f"售出禁用农药：{products_zh}", f"Sold a banned pesticide: {products_en}"
    elif code == "restricted_sold_not_designated":
        zh, en = (f"非定点门店售出限制使用农药：{products_zh}",
                  f"A shop that is not designated sold a restricted-use pesticide: {products_en}")
    elif code == "restricted_sold_no_permit":
        zh, en = (f"向无许可的主体售出限制使用农药：{products_zh}",
                  f"Sold a restricted-use pesticide to a subject without a permit: {products_en}")
        if d.get("subject_registered") is False:
            zh, en = zh + "（主体不在登记册中）", en + " (subject not in the registry)"
    elif code == "face_check_missing":
        zh, en = (f"须刷脸核验，却只刷卡售出：{products_zh}",
                  f"Sold on the card alone where a face check was required: {products_en}")
    elif code == "card_travel_impossible":
        known = isinstance(d.get("other_shop"), str)
        other_zh = names.shop(d["other_shop"]) if known else "另一店"
        other_en = names.shop(d["other_shop"]) if known else "another shop"
        zh = f"同一张卡 {d.get('minutes', '—')} 分钟内先后在{other_zh}和本店使用，两店相距 {d.get('km', '—')} 公里"
        en = (f"The same card was used at {other_en} and here {d.get('minutes', '—')} minutes apart, "
              f"{d.get('km', '—')} km away")
    elif code in ("split_purchase", "split_purchase_group"):
        total_zh, total_en = _amount(d.get("kind"), d.get("total"))
        limit_zh, limit_en = _amount(d.get("kind"), d.get("limit"))
        who_zh = who_en = ""
        if code == "split_purchase_group":
            n = len(d["subjects"]) if isinstance(d.get("subjects"), list) else "多"
            who_zh, who_en = f"同一户/合作社 {n} 人", f"{n} members of one household or cooperative, "
        zh = (f"{who_zh}{d.get('window_minutes', '—')} 分钟内 {d.get('purchases', '—')} 次购买{kind_zh}，"
              f"合计 {total_zh}，超过上限 {limit_zh}")
        en = (f"{who_en}{d.get('purchases', '—')} purchases of {kind_en} within {d.get('window_minutes', '—')} "
              f"minutes, {total_en} in all, over the limit of {limit_en}")
    elif code == "top_buyer":
        cat = d.get("category") if isinstance(d.get("category"), str) else ""
        zh = (f"{d.get('month', '')} 用量排名第 {d.get('rank', '—')}：{category_name(cat, 'zh')}已用定额的 "
              f"{_pct(d.get('ratio'))}")
        en = (f"Rank {d.get('rank', '—')} for {d.get('month', '')}: {_pct(d.get('ratio'))} of the "
              f"{category_name(cat, 'en')} allowance used")
    elif code == "terminal_silent":
        zh = f"终端自 {names.time(d.get('last_seen'))} 起 {d.get('silent_minutes', '—')} 分钟无消息"
        en = f"No message from the terminal for {d.get('silent_minutes', '—')} minutes, since {names.time(d.get('last_seen'))}"
    elif code == "clock_skew":
        ahead = d.get("direction") == "ahead"
        zh = (f"终端时钟{'快' if ahead else '回拨'} {d.get('seconds', '—')} 秒：记录时间 {names.time(d.get('record_time'))}，"
              f"收到时间 {names.time(d.get('received'))}")
        en = (f"Terminal clock {'ahead' if ahead else 'set back'} by {d.get('seconds', '—')} s: record stamped "
              f"{names.time(d.get('record_time'))}, received {names.time(d.get('received'))}")
    elif code == "backlog_growing":
        steps = " → ".join(str(b) for b in d.get("backlog", []) if isinstance(b, int)) if isinstance(
            d.get("backlog"), list) else "—"
        zh = f"自 {names.time(d.get('since'))} 起待上传记录持续增加：{steps}"
        en = f"Upload backlog growing since {names.time(d.get('since'))}: {steps}"
    elif code == "sale_outside_hours":
        zh = f"{d.get('local_time', '—')} 售出，营业时间 {d.get('hours') or '未登记'}"
        en = f"Sold at {d.get('local_time', '—')}, opening hours {d.get('hours') or 'not registered'}"
    elif code == "override_rate_high":
        zh = (f"{d.get('window_hours', '—')} 小时内 {d.get('sales', '—')} 笔销售中 {d.get('overrides', '—')} 笔"
              f"由店员代为确认身份（{_pct(d.get('ratio'))}）")
        en = (f"{d.get('overrides', '—')} of {d.get('sales', '—')} sales in {d.get('window_hours', '—')} hours "
              f"without real-name identity, by clerk override ({_pct(d.get('ratio'))})")
    elif code == "identity_unproven_offline":
        reason = d.get("reason") if isinstance(d.get("reason"), str) else ""
        zh = f"离线销售的身份未经核验：{reasons.text(reason, 'zh')}" if reason else None
        en = f"Offline sale whose identity is not proven: {reasons.text(reason, 'en')}" if reason else None
    elif code == "ledger_gap":
        seq_to = f"–#{d['seq_to']}" if isinstance(d.get("seq_to"), int) else ""
        zh, en = f"台账记录缺失：#{seq if seq is not None else ''}{seq_to}", f"Ledger records missing: #{seq if seq is not None else ''}{seq_to}"
    elif code == "over_quota":
        cats = d.get("categories") if isinstance(d.get("categories"), dict) else {}
        zh = "超出定额：" + "、".join(category_name(c, "zh") for c in sorted(cats))
        en = "Over the allowance: " + ", ".join(category_name(c, "en") for c in sorted(cats))
    if zh is None:
        zh, en = reasons.text(code, "zh"), reasons.text(code, "en")
    return {"zh": zh, "en": en}
