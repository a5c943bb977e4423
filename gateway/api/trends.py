"""Weekly trends and the amounts charts draw, from the sales index.

Pesticide is counted by the unit it is sold in: solid in grams and liquid in
millilitres, never added together (a 500 g sachet and a 500 mL bottle are not
a kilogram of anything). A sale's own `consumption` (quota categories
`pesticide_g`, `pesticide_ml`) says it when the terminal recorded one; an
older sale without it is read item by item, each pack's unit from the
catalogue. Weeks start on Monday in the district's calendar (the sales'
`day` is already local)."""

from __future__ import annotations

import datetime as dt
import json


def week_of(day: str) -> str:
    d = dt.date.fromisoformat(day)
    return (d - dt.timedelta(days=d.weekday())).isoformat()


def weeks_back(today: str, n: int) -> list[str]:
    last = dt.date.fromisoformat(week_of(today))
    return [(last - dt.timedelta(weeks=n - 1 - i)).isoformat() for i in range(n)]


def pesticide_amounts(consumption: str | None, record: str | None, products: dict) -> tuple[int, int]:
    """(grams, millilitres) of pesticide in one sale."""
    if consumption:
        try:
            c = json.loads(consumption)
            return int(c.get("pesticide_g") or 0), int(c.get("pesticide_ml") or 0)
        except (ValueError, TypeError, AttributeError):
            return 0, 0
    grams = millilitres = 0
    if record:
        try:
            items = json.loads(record)["body"].get("items") or []
        except (ValueError, KeyError, AttributeError):
            return 0, 0
        for item in items:
            prod = products.get(item.get("product")) if isinstance(item, dict) else None
            if not isinstance(prod, dict) or prod.get("kind") != "pesticide":
                continue
            packs = prod.get("packs") or {}
            pack = packs.get(item.get("spec")) or (packs[sorted(packs)[0]] if packs else {})
            amount = item.get("amount")
            if not isinstance(amount, int):
                amount = int(pack.get("net") or 0) * int(item.get("packs") or 0)
            if str(pack.get("unit", "g")).lower() == "ml":
                millilitres += amount
            else:
                grams += amount
    return grams, millilitres


SERIES = ("sales", "refusals", "violations", "pesticide_g", "pesticide_ml", "fertilizer_g")


def empty() -> dict:
    return {k: 0 for k in SERIES}


def add_sale(cell: dict, rtype: str, fertilizer: int, consumption, record, products: dict) -> None:
    if rtype == "sale":
        cell["sales"] += 1
        cell["fertilizer_g"] += fertilizer or 0
        g, ml = pesticide_amounts(consumption, record, products)
        cell["pesticide_g"] += g
        cell["pesticide_ml"] += ml
    elif rtype == "refusal":
        cell["refusals"] += 1
