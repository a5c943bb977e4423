"""Shops, their ledgers and terminals, and a terminal's records as signed.
Reads of a ledger or of records are audited: they hold personal data."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query

from gateway.store import users
from gateway.api import exports, queries
from gateway.api.listing import FILE_RESPONSES, Day, Filters, Format, day_span, file_response, place_filters
from gateway.api.deps import (MAX_ID, Context, Page, context, current_user, paging, shop_or_404, terminal_or_404,
                              visible_town)
from gateway.api.security import ID_PATTERN, Ident
from gateway.store.users import User

router = APIRouter()


def _fleet(ctx: Context, user: User, shop: str | None = None) -> list[dict]:
    return queries.fleet(ctx.db.conn(), user, ctx.clock(), ctx.cfg["silent"]["minutes"] * 60_000, shop)


@router.get("/api/terminals", tags=["fleet"], responses=FILE_RESPONSES)
def terminals_(page: Page = Depends(paging), f: Filters = Depends(place_filters),
               fmt: Format = Query("json", alias="format"), user: User = Depends(current_user),
               ctx: Context = Depends(context)):
    """Terminals in the area: online/offline from their retained status, last
    seen, upload backlog, software versions and clock skew; a page of them,
    with the area's total and how many are online. `now` is the server's
    clock, so "last seen" is counted from it, not from the browser's.
    Filters `town`, `village`, `shop`; `from`/`to` on the last message."""
    fleet = [t for t in _fleet(ctx, user, f.shop)
             if (not f.town or t["town"] == f.town) and (not f.village or t["village"] == f.village)
             and (f.start is None or (t["last_seen"] or 0) >= f.start)
             and (f.end is None or (t["last_seen"] or 0) < f.end)]
    if fmt != "json":
        return file_response(fmt, exports.TERMINAL_COLUMNS, exports.terminal_rows(fleet, ctx.tz), "终端", "terminals")
    start = (page.page - 1) * page.per_page
    return {"terminals": fleet[start:start + page.per_page], "total": len(fleet),
            "online": sum(1 for t in fleet if t["state"] == "online"), "page": page.page, "per_page": page.per_page,
            "now": ctx.clock()}


@router.get("/api/shops", tags=["shops"])
def list_shops(town: Ident | None = None, user: User = Depends(current_user),
               ctx: Context = Depends(context)) -> dict:
    visible_town(ctx, user, town)
    return {"shops": queries.shops(ctx.db.conn(), user, town)}


@router.get("/api/shops/{shop_id}", tags=["shops"], responses=FILE_RESPONSES)
def get_shop(shop_id: str = Path(pattern=ID_PATTERN), before_time: int | None = Query(None, ge=0, le=MAX_ID),
             page: Page = Depends(paging), day_from: Day | None = Query(None, alias="from"),
             day_to: Day | None = Query(None, alias="to"), subject: Ident | None = None,
             fmt: Format = Query("json", alias="format"), user: User = Depends(current_user),
             ctx: Context = Depends(context)):
    """A shop with its terminals' status, open cases and a page of its ledger,
    newest first. Audited. `now`: the server's clock, for "last seen".
    The ledger filtered by `from`/`to` (local days) and `subject`;
    `format=csv|xlsx`: the whole filtered ledger as a file (audited the same)."""
    shop = shop_or_404(ctx, user, shop_id)
    span = day_span(ctx, day_from, day_to)
    conn = ctx.db.conn()
    rows, total = queries.ledger(conn, shop_id, before_time, page.per_page if fmt == "json" else None,
                                 (page.page - 1) * page.per_page,
                                 {"s.subject": subject, **span.span("s.time")})
    ledger = ctx.name_items(conn, rows)
    subjects = queries.subject_names(conn, [r["subject"] for r in ledger])
    for r in ledger:
        r["subject_name"] = subjects.get(r["subject"])
        r["shop_name"] = shop["name"]
    if fmt != "json":
        with ctx.db.write() as w:
            users.audit(w, ctx.clock(), user, "read_ledger", shop_id, "export")
        return file_response(fmt, exports.SALE_COLUMNS, exports.sale_rows(ledger, ctx.tz), f"{shop['name']}台账",
                             f"ledger-{shop_id}")
    shop["town_name"], shop["village_name"] = queries.area_name(conn, shop["town"]), queries.area_name(conn, shop["village"])
    with ctx.db.write() as w:
        users.audit(w, ctx.clock(), user, "read_ledger", shop_id)
    return {"shop": shop, "terminals": _fleet(ctx, user, shop_id), "ledger": ledger,
            "ledger_page": {"total": total, "page": page.page, "per_page": page.per_page},
            "cases": queries.open_shop_cases(conn, shop_id), "now": ctx.clock()}


@router.get("/api/records", tags=["shops"])
def list_records(terminal: Ident, before_seq: int | None = Query(None, ge=1, le=MAX_ID),
                 limit: int = Query(50, ge=1, le=500), user: User = Depends(current_user),
                 ctx: Context = Depends(context)) -> dict:
    """A terminal's stored records verbatim (as signed), newest first. Audited."""
    terminal_or_404(ctx, user, terminal)
    found = queries.records(ctx.db.conn(), terminal, before_seq, limit)
    with ctx.db.write() as w:
        users.audit(w, ctx.clock(), user, "read_records", terminal)
    return {"records": found}
