"""What the screen shows, as JSON built from the counter's data: a cart line,
the buyer's panel, a decision, a ledger row; and what the clerk can do, in
plain words. Pure functions of what they are given (the counter for the
synced catalogue and the date), so the session, the exports and the tests
build the same views."""

from __future__ import annotations

import logging

from firmware import receipt as _receipt
from firmware.counter import Cart, Identity, Outcome
from protocols import catalogue as _catalogue, policy, reasons
from protocols.display import mask_name

log = logging.getLogger(__name__)

# What the clerk can do, in plain words (policy.ACTIONS and labelcode.ACTIONS names).
ACTION_TEXT = {
    "refuse_sale": ("不能销售给该主体，请向购买人说明原因", "Do not sell to this buyer; explain why"),
    "add_items": ("请先扫描商品", "Scan products first"),
    "remove_item": ("请从清单中移除该商品", "Remove this product from the cart"),
    "refer_designated_shop": ("请购买人到定点经营门店购买", "Refer the buyer to a designated shop"),
    "rescan": ("请重新扫码", "Scan again"),
    "choose_by_hand": ("请在目录中手工选择产品", "Choose the product from the catalogue"),
    "fix_quantity": ("请改正数量", "Correct the quantity"),
    "identify": ("请刷主体信息卡或刷脸", "Tap the subject card or use the face check"),
    "ask_card": ("请购买人刷主体信息卡", "Ask for the subject card"),
    "ask_face": ("请购买人看摄像头完成刷脸核验", "Ask the buyer to look at the camera"),
    "retry_online": ("请等网络恢复后再售，或移除该商品", "Wait for the network, or remove this product"),
    "reduce_quantity": ("请减少数量", "Reduce the quantity"),
}

SCREENS = ("signin", "idle", "sale", "deciding", "result", "return")


def action_text(action: str | None, lang: str = "zh") -> str:
    texts = ACTION_TEXT.get(action or "")
    if not texts:
        return ""
    return texts[1] if lang == "en" else texts[0]


def _may_buy(entry: dict, params: dict, category: str, date: str) -> bool:
    """Whether a quota bar means anything to this buyer. A category counted by
    restricted active ingredient (carbofuran, omethoate) is bought only under a
    permit covering it; for a buyer without one its bar is noise that reads
    like an entitlement. The permit test is the policy's own, so the panel and
    the decision agree."""
    cat = (params.get("categories") or {}).get(category) or {}
    if cat.get("basis") != "ingredient":
        return True
    return policy._permit_reason(entry, cat.get("ingredients") or [], date) is None


def product_of(counter, product: str, spec: str) -> tuple[dict | None, dict | None]:
    """(product, pack) from the synced catalogue, None for what it does not hold."""
    return _catalogue.pack(counter.index().data, product, spec)


def line_view(counter, index: int, line) -> dict:
    prod, pack = product_of(counter, line.product, line.spec)
    date = counter.today()
    status = _catalogue.status_on(counter.index().data, prod, date)["status"] if prod else None
    return {"index": index, "product": line.product, "spec": line.spec, "packs": line.packs, "code": line.code,
            "name": prod["name"] if prod else line.product, "status": status,
            "pack": _receipt.amount_text(pack["net"], pack["unit"]) if pack else "",
            "unit_fen": line.unit_fen, "line_fen": None if line.unit_fen is None else line.unit_fen * line.packs}


def cart_bill(counter, lines) -> dict:
    """What the cart would cost if every line were sold: line totals, the
    deposit on pesticide packs and the total, for the screen before checkout."""
    return counter.charge(lines, [True] * len(lines)).as_dict()


def subject_panel(counter, store, identity: Identity) -> dict:
    """Masked name, village, credit grade, remaining quota per category: what
    the clerk needs to serve the buyer, nothing more. Village name and grade
    come with the synced registry entry (docs/protocol.md "Configuration
    sync"); `grade` is None when the gateway sent none ("not rated")."""
    entry = store.subject(identity.subject) or {}
    params = store.params()
    bars = []
    if params and entry:
        try:
            balance = policy.balance(entry, store.used(identity.subject), params, counter.today())
        except policy.PolicyError as exc:
            log.warning("balance failed subject=%s: %s", identity.subject, exc)
            balance = {}
        for category, b in sorted(balance.items()):
            if not b["enforced"] or b["allowance"] <= 0 or not _may_buy(entry, params, category, counter.today()):
                continue
            unit = _receipt.category_unit(category, params)
            bars.append({
                "category": category, "zh": _receipt.category_name(category, "zh"),
                "en": _receipt.category_name(category, "en"), "period": b["period"],
                "allowance": b["allowance"], "used": b["used"], "remaining": b["remaining"],
                "remaining_text": _receipt.amount_text(b["remaining"], unit),
                "allowance_text": _receipt.amount_text(b["allowance"], unit),
                "pct": max(0, min(100, b["remaining"] * 100 // b["allowance"])),
            })
    return {
        "id": identity.subject, "method": identity.method, "card": bool(identity.card),
        "name": mask_name(entry.get("name")), "known": bool(entry),
        "town": entry.get("town"), "village": entry.get("village"), "village_name": entry.get("village_name"),
        "grade": entry.get("grade") if entry.get("grade") in ("A", "B", "C") else None,
        "status": entry.get("status"), "quota": bars,
    }


def outcome_view(counter, terminal: str, outcome: Outcome, cart: Cart) -> dict:
    items = []
    for line, verdict in zip(cart.lines, outcome.items):
        prod, pack = product_of(counter, line.product, line.spec)
        codes = verdict.get("reasons") or []
        items.append({
            "product": line.product, "spec": line.spec, "packs": line.packs,
            "name": prod["name"] if prod else line.product,
            "pack": _receipt.amount_text(pack["net"], pack["unit"]) if pack else "",
            "decision": verdict["decision"],
            "reasons": [{"code": c, "zh": reasons.text(c, "zh"), "en": reasons.text(c, "en")} for c in codes],
            "action": verdict.get("action"),
            "action_zh": action_text(verdict.get("action"), "zh"),
            "action_en": action_text(verdict.get("action"), "en"),
            "max_packs": verdict.get("max_packs"),
            "line_fen": outcome.charge.lines[len(items)] if outcome.charge else None,
        })
    return {
        "approved": outcome.approved, "decision": outcome.decision, "mode": outcome.mode,
        "record": outcome.record, "seq": outcome.seq, "record_id": _receipt.record_id(terminal, outcome.seq),
        "sale_id": outcome.sale_id, "auth": outcome.auth, "items": items,
        "codes": outcome.codes, "action": outcome.action,
        "action_zh": action_text(outcome.action, "zh"), "action_en": action_text(outcome.action, "en"),
        "voided": False,
        "bill": outcome.charge.as_dict() if outcome.charge else None,
    }


def row_view(counter, record: dict, acked: int, clerk_names: dict | None = None) -> dict:
    """One ledger record for people: product names, the clerk's name as the
    kiosk's config gives it (`clerk` keeps the id written on the record)."""
    body = record["body"]
    items = []
    for item in body.get("items") or []:
        prod, pack = product_of(counter, item["product"], item.get("spec") or "")
        items.append("%s x%d%s%s" % (prod["name"] if prod else item["product"], item["packs"],
                                    "" if item.get("decision", "approve") == "approve" else "（拒）",
                                    " " + _receipt.yuan(item["price_fen"]) if "price_fen" in item else ""))
    if record["type"] == "return":
        items.append("回收包装 x%d，%s" % (len(body.get("codes") or []), _receipt.yuan(body.get("deposit_fen") or 0)))
    return {
        "seq": record["seq"], "time": _receipt.time_text(record["time"]), "time_ms": record["time"],
        "type": record["type"], "mode": body.get("mode"), "subject": body.get("subject"),
        "clerk": body.get("clerk"), "clerk_name": (clerk_names or {}).get(body.get("clerk"), body.get("clerk")),
        "items": items, "reasons": body.get("reasons") or [],
        "links": body.get("links") or [], "codes": body.get("codes") or [],
        "deposit_fen": body.get("deposit_fen"), "voids": body.get("voids"), "total_fen": body.get("total_fen"),
        "uploaded": record["seq"] <= acked,
    }
