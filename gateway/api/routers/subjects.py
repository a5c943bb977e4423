"""A subject's page. Registry fields reach each role by allowlist
(`subjects_view.view`); full ID numbers only for district users who ask, and
every read of the page writes an audit row."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query

from gateway.supervision import cases

from gateway.enforcement import subjects_view

from gateway.store import users
from gateway.api import exports, queries, words
from gateway.api.listing import FILE_RESPONSES, Day, Format, day_span, file_response
from gateway.api.security import Ident
from gateway.api.deps import Context, Page, context, current_user, paging
from gateway.api.errors import ApiError
from gateway.api.security import ID_PATTERN
from gateway.store.users import User
from protocols import policy
from protocols.display import amount_text, category_name, category_unit

router = APIRouter(tags=["subjects"])


@router.get("/api/subjects/{subject_id}", responses=FILE_RESPONSES)
def get_subject(subject_id: str = Path(pattern=ID_PATTERN), reveal: bool = Query(False),
                page: Page = Depends(paging), day_from: Day | None = Query(None, alias="from"),
                day_to: Day | None = Query(None, alias="to"), shop: Ident | None = None,
                fmt: Format = Query("json", alias="format"), user: User = Depends(current_user),
                ctx: Context = Depends(context)):
    """A subject: registry entry (the fields the caller's role may see, by
    allowlist; ID numbers and phones masked), credit grade, allowance, used
    and remaining per category, purchases in the caller's area. Audited.
    `reveal=true`: the full ID numbers, for district users only, each such
    read audited as `read_id_number`. Purchases filtered by `from`/`to`
    (local days) and `shop`; `format=csv|xlsx`: all of them as a file (the
    read audited as `read_subject`)."""
    if reveal and user.role not in subjects_view.REVEALABLE:
        raise ApiError(403, "forbidden_role", "full ID numbers are for district staff")
    conn = ctx.db.conn()
    if not queries.subject_visible(conn, user, subject_id):
        raise ApiError(404, "not_found", subject_id)
    entry = subjects_view.lookup(conn, subject_id)
    balance = None
    if entry is not None:
        try:
            balance = policy.balance(entry, queries.quota_used(conn, subject_id), ctx.policy_params, ctx.today())
        except policy.PolicyError:
            balance = None
    span = day_span(ctx, day_from, day_to)
    found, total = queries.purchases(conn, user, subject_id, page.per_page if fmt == "json" else None,
                                     (page.page - 1) * page.per_page,
                                     {"s.shop": shop, **span.span("s.time")})
    purchases = ctx.name_items(conn, found)
    shops = queries.shop_names(conn)
    name = words.subject_name(entry)
    for p in purchases:
        p["shop_name"] = shops.get(p["shop"])
        p["subject"], p["subject_name"] = subject_id, name
    if fmt != "json":
        with ctx.db.write() as w:
            users.audit(w, ctx.clock(), user, "read_subject", subject_id, "export")
        return file_response(fmt, exports.SALE_COLUMNS, exports.sale_rows(purchases, ctx.tz), "购买记录",
                             f"purchases-{subject_id}")
    for category, b in (balance or {}).items():
        unit = category_unit(category, ctx.policy_params)
        b["name"] = {"zh": category_name(category, "zh"), "en": category_name(category, "en")}
        b["unit"] = unit
        b["text"] = {k: amount_text(b[k], unit) for k in ("allowance", "used", "remaining")
                     if isinstance(b.get(k), int)}
    registry, revealed = subjects_view.view(entry, user.role, reveal)
    with ctx.db.write() as w:
        users.audit(w, ctx.clock(), user, "read_subject", subject_id)
        if revealed:
            users.audit(w, ctx.clock(), user, "read_id_number", subject_id, ",".join(revealed))
    areas = {code: queries.area_name(conn, code) for code in {(registry or {}).get("town"), (registry or {}).get("village")}
             if isinstance(code, str)}
    return {"id": subject_id, "name": words.subject_name(entry), "registry": registry, "area_names": areas, "grade": cases.grade(conn, subject_id, ctx.clock(), ctx.cfg),
            "balance": balance, "purchases": purchases,
            "purchases_page": {"total": total, "page": page.page, "per_page": page.per_page}, "cases": queries.subject_cases(conn, user, subject_id)}
