"""Today's figures per area, and the statistics behind the overview's charts."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Query

from gateway.api import queries, trends
from gateway.api.deps import Context, context, current_user
from gateway.supervision.rules import local_parts
from gateway.store.users import User
from protocols.display import category_name

router = APIRouter(tags=["statistics"])


def child_level(user: User) -> str:
    return {"district": "town", "town": "village", "village": "village"}[user.role]


@router.get("/api/overview")
def overview(user: User = Depends(current_user), ctx: Context = Depends(context)) -> dict:
    """Today's sales, refusals and open cases per town (per village for a town
    user); open cases are those of the inspection queue (`/api/queue`).
    `yesterday`: the day before's sales and refusals in the same area, so
    the morning's cards (0 just after midnight) still read against a day."""
    conn = ctx.db.conn()
    group = child_level(user)
    day = ctx.today()
    groups = queries.overview_counts(conn, user, ctx.cfg, group, day)
    totals = {k: sum(g[k] for g in groups) for k in ("sales", "refusals", "voids", "open_cases")}
    fleet = queries.fleet(conn, user, ctx.clock(), ctx.cfg["silent"]["minutes"] * 60_000)
    before = (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()
    return {"day": day, "level": group, "groups": groups, "totals": totals,
            "yesterday": {"day": before, **queries.day_totals(conn, user, before)},
            "fleet": {"total": len(fleet), "online": sum(1 for t in fleet if t["state"] == "online")}}


@router.get("/api/stats/daily")
def stats_daily(days: int = Query(30, ge=1, le=366), user: User = Depends(current_user),
                ctx: Context = Depends(context)) -> dict:
    """Sales and refusals per day, with what was sold: pesticide in g (solid)
    and mL (liquid) apart (`pesticide_g`, `pesticide_ml`; `pesticide` is
    their old mixed sum, kept for existing readers), fertilizer in g of
    product."""
    start_day = local_parts(ctx.clock() - (days - 1) * 86_400_000, ctx.tz)[0]
    today = ctx.today()
    conn = ctx.db.conn()
    found = queries.daily(conn, user, start_day, today)
    amounts: dict[str, list[int]] = {}
    products = ctx.products(conn)
    for day, _town, rtype, _fert, consumption, record in queries.sales_since(conn, user, "town", start_day):
        if rtype == "sale" and day <= today:
            g, ml = trends.pesticide_amounts(consumption, record, products)
            a = amounts.setdefault(day, [0, 0])
            a[0] += g
            a[1] += ml
    for d in found:
        d["pesticide_g"], d["pesticide_ml"] = amounts.get(d["day"], [0, 0])
    return {"from": start_day, "to": today, "days": found}


@router.get("/api/stats/quota")
def stats_quota(user: User = Depends(current_user), ctx: Context = Depends(context)) -> dict:
    """Quota use per town and category this period: used against the sum of allowances."""
    conn = ctx.db.conn()
    periods = ctx.quota_periods()
    visible: dict[str, bool] = {}
    totals: dict[tuple, dict] = {}
    for (town, cat), allowance in ctx.town_allowances(conn, periods).items():
        if town not in visible:
            visible[town] = queries.area_visible(conn, user, town)
        if visible[town]:
            totals[(town, cat)] = {"town": town, "category": cat, "period": periods[cat], "allowance": allowance,
                                   "used": 0}
    used = queries.towns_quota_used(conn, periods)
    for (town, cat), row in totals.items():
        row["used"] = used.get((town, cat), 0)
        row["name"] = queries.area_name(conn, town)
        row["category_name"] = {"zh": category_name(cat, "zh"), "en": category_name(cat, "en")}
    return {"towns": sorted(totals.values(), key=lambda r: (r["town"], r["category"]))}
