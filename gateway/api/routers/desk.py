"""The desk's finding and seeing (issue 18, items 8 and 9): one search box for
farmers, shops and products; a product's catalogue entry; the grid as a map
of its shops with their open cases; and weekly trends.

Search keeps the area rule: a subject is found only if the caller may open
its page (`queries.subject_visible`), a shop only inside the caller's area.
An ID number is looked up only for district staff, and each such search that
finds someone is audited as `search_id_number`, like a full-ID read; for
anyone else an ID number finds nothing, so the search never confirms one."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import AfterValidator, StringConstraints

from gateway.enforcement import subjects_view
from gateway.store import registry as registry_store, users
from gateway.api import queries, words
from gateway.api.deps import Context, context, current_user
from gateway.api.errors import ApiError
from gateway.api.security import ID_PATTERN, NOTES_PATTERN, _plain
from gateway.store.users import User
from gateway.supervision import grid
from gateway.supervision.rules import local_parts
from gateway.api.trends import add_sale, empty, week_of, weeks_back

router = APIRouter()

SearchText = Annotated[str, StringConstraints(min_length=1, max_length=40, strip_whitespace=True,
                                              pattern=NOTES_PATTERN), AfterValidator(_plain)]
ID_NUMBER = re.compile(r"^(\d{17}[\dXx]|\d{15}|[0-9A-HJ-NPQRTUWXY]{18})$")   # 身份证 or 统一社会信用代码
FOUND_MAX = 20   # of each kind: a search box, not a list


SEARCH_SCAN = 200   # subjects whose name holds every pair of characters of the text, checked for the text itself


def _subjects_by_name(conn, user: User, text: str) -> list[dict]:
    folded = text.casefold()
    pairs = sorted(registry_store.name_grams(folded) - set(folded)) if len(folded) > 1 else [folded]
    return [{"id": sid, "name": words.subject_name(entry), "by": "name"}
            for sid, entry in queries.find_subjects(conn, user, "name", pairs[:8], SEARCH_SCAN)
            if folded in str(entry.get("name") or "").casefold()][:FOUND_MAX]


def _subjects_by_id_number(conn, user: User, text: str) -> list[dict]:
    return [{"id": sid, "name": words.subject_name(entry), "by": "id_number"}
            for sid, entry in queries.find_subjects(conn, user, "id", [text.upper()], FOUND_MAX)]


def _subjects_by_card(conn, user: User, text: str) -> list[dict]:
    ids = queries.buyers_by_card(conn, user, text, FOUND_MAX)
    ids += [sid for sid, _ in queries.find_subjects(conn, user, "card", [text], FOUND_MAX) if sid not in ids]
    names = queries.subject_names(conn, ids)
    return [{"id": sid, "name": names.get(sid), "by": "card"} for sid in ids]


def status_on(entry: dict, day: str) -> str:
    """A product's status on `day`: the catalogue keeps its history
    ([{from, status}, ...]); a product without one is normal."""
    history = entry.get("status")
    if isinstance(history, str):
        return history
    current = "normal"
    for step in sorted((h for h in history or [] if isinstance(h, dict)), key=lambda h: str(h.get("from") or "")):
        if str(step.get("from") or "") <= day:
            current = str(step.get("status") or current)
    return current


@router.get("/api/search", tags=["search"])
def search(q: SearchText, user: User = Depends(current_user), ctx: Context = Depends(context)) -> dict:
    """Farmers by name, card number or (district staff only, audited) ID
    number; shops by name; products by name or registration number. Each
    kind at most 20, names masked as on every list."""
    conn = ctx.db.conn()
    subjects = _subjects_by_name(conn, user, q)
    seen = {s["id"] for s in subjects}
    if re.fullmatch(ID_PATTERN, q):
        subjects += [s for s in _subjects_by_card(conn, user, q) if s["id"] not in seen]
        seen = {s["id"] for s in subjects}
    if user.role in subjects_view.REVEALABLE and ID_NUMBER.match(q):
        by_number = [s for s in _subjects_by_id_number(conn, user, q) if s["id"] not in seen]
        if by_number:
            with ctx.db.write() as w:
                for s in by_number:
                    users.audit(w, ctx.clock(), user, "search_id_number", s["id"])
        subjects += by_number
    shops = queries.shops_named(conn, user, q, FOUND_MAX)
    areas = grid.area_names(conn)
    for s in shops:
        s["town_name"], s["village_name"] = areas.get(s["town"]), areas.get(s["village"])
    folded = q.casefold()
    today = ctx.today()
    products = [{"reg": reg, "name": p.get("name") or reg, "status": status_on(p, today)}
                for reg, p in sorted(ctx.products(conn).items())
                if isinstance(p, dict) and (folded in reg.casefold() or folded in str(p.get("name") or "").casefold())]
    return {"q": q, "subjects": subjects[:FOUND_MAX], "shops": shops, "products": products[:FOUND_MAX]}


@router.get("/api/products/{reg}", tags=["search"])
def product(reg: str = Path(pattern=ID_PATTERN), user: User = Depends(current_user),
            ctx: Context = Depends(context)) -> dict:
    """A product's catalogue entry (name, status, unit, content), as the terminals have it."""
    entry = ctx.products(ctx.db.conn()).get(reg)
    if not isinstance(entry, dict):
        raise ApiError(404, "not_found", reg)
    return {"reg": reg, **{k: v for k, v in entry.items() if isinstance(v, (str, int, float, bool, list, dict))},
            "status": status_on(entry, ctx.today()), "status_history": entry.get("status") or []}


@router.get("/api/map", tags=["map"])
def grid_map(user: User = Depends(current_user), ctx: Context = Depends(context)) -> dict:
    """The area's shops with their coordinates and open cases (as the queue
    counts them, with the worst severity), and the towns and villages placed
    at the middle of their shops: drawn by the page from the grid's own
    coordinates. `tiles`: a tile URL template ({z}/{x}/{y}) when the
    deployment has a tile server of its own, else null (the default)."""
    conn = ctx.db.conn()
    shops = queries.map_shops(conn, user, ctx.cfg)
    areas: dict[tuple, dict] = {}
    for s in shops:
        for level in ("town", "village"):
            code = s[level]
            if not code:
                continue
            a = areas.setdefault((level, code), {"level": level, "code": code, "name": s[level + "_name"],
                                                 "shops": 0, "open_cases": 0, "lat": None, "lon": None, "_pts": []})
            a["shops"] += 1
            a["open_cases"] += s["open_cases"]
            if s["lat"] is not None and s["lon"] is not None:
                a["_pts"].append((s["lat"], s["lon"]))
    for a in areas.values():
        pts = a.pop("_pts")
        if pts:
            a["lat"] = round(sum(p[0] for p in pts) / len(pts), 6)
            a["lon"] = round(sum(p[1] for p in pts) / len(pts), 6)
    return {"shops": shops, "areas": sorted(areas.values(), key=lambda a: (a["level"], a["code"])),
            "tiles": ctx.map_tiles}


@router.get("/api/stats/weekly", tags=["statistics"])
def stats_weekly(by: Literal["town", "village", "shop"] = "town", weeks: int = Query(12, ge=1, le=53),
                 user: User = Depends(current_user), ctx: Context = Depends(context)) -> dict:
    """Sales, refusals and violations (those for inspectors, not the watch
    list) per week, per town, village or shop, in the district's calendar
    (weeks from Monday); pesticide in g (solid) and mL (liquid) apart,
    fertilizer in g of product. `totals`: the area's weeks."""
    conn = ctx.db.conn()
    week_list = weeks_back(ctx.today(), weeks)
    first = week_list[0]
    start_ms = int(dt.datetime.fromisoformat(first).replace(
        tzinfo=dt.timezone(dt.timedelta(minutes=ctx.tz))).timestamp() * 1000)
    products = ctx.products(conn)
    cells: dict[str, dict[str, dict]] = {}
    totals = {w: empty() for w in week_list}
    for day, code, rtype, fert, consumption, record in queries.sales_since(conn, user, by, first):
        w = week_of(day)
        if w not in totals:
            continue
        for cell in (cells.setdefault(code or "", {}).setdefault(w, empty()), totals[w]):
            add_sale(cell, rtype, fert, consumption, record, products)
    for at, code in queries.violations_since(conn, user, ctx.cfg, by, start_ms):
        w = week_of(local_parts(at, ctx.tz)[0])
        if w in totals:
            cells.setdefault(code or "", {}).setdefault(w, empty())["violations"] += 1
            totals[w]["violations"] += 1
    names = queries.shop_names(conn) if by == "shop" else grid.area_names(conn)
    groups = [{"code": code or None, "name": names.get(code) if code else None,
               "weeks": [{"week": w, **per.get(w, empty())} for w in week_list]}
              for code, per in sorted(cells.items())]
    return {"by": by, "weeks": week_list, "groups": groups,
            "totals": [{"week": w, **totals[w]} for w in week_list]}
