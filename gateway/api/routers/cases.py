"""Violations and the case workflow: list, read, assign, inspect, photos,
close and confirm. Closing with an outcome under the two-person rule only
proposes it (`cases.close`, `/confirm`)."""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from gateway.supervision import cases, inspection_sheet
from gateway.api import exports, queries, words
from gateway.api.deps import MAX_ID, Context, Page, case_or_404, context, current_user, paging
from gateway.api.errors import ApiError
from gateway.api.listing import FILE_RESPONSES, Filters, Format, file_response, filters
from gateway.api.models import Assign, Close, Confirm, Inspect
from gateway.api.security import Ident
from gateway.store.users import User

router = APIRouter()


@router.get("/api/violations", tags=["violations"], responses=FILE_RESPONSES)
def list_violations(f: Filters = Depends(filters), before_id: int | None = Query(None, ge=1, le=MAX_ID),
                    limit: int = Query(50, ge=1, le=200), fmt: Format = Query("json", alias="format"),
                    user: User = Depends(current_user), ctx: Context = Depends(context)):
    """Findings filed to cases, one row each, newest first (`before_id` for
    the next page). The same filters as every list: `from`, `to`, `town`,
    `village`, `shop`, `subject`, `code`; `format=csv|xlsx`: all of them as a file."""
    conn = ctx.db.conn()
    found = queries.violations(conn, user, _violation_filters(f), before_id, limit if fmt == "json" else None)
    if fmt == "json":
        return {"violations": found}
    names = ctx.names(conn, [v["subject"] for v in found])
    for v in found:
        v["subject_name"] = names.subject(v["subject"]) if v["subject"] else None
        v["shop_name"] = names.shop(v["shop"]) if v["shop"] else None
        v["sentence"] = words.describe(v["code"], v["detail"], names, v["seq"])
    return file_response(fmt, exports.VIOLATION_COLUMNS, exports.violation_rows(found, ctx.tz), "违规明细",
                         "violation-list")


def _violation_filters(f: Filters) -> dict:
    return {"v.code": f.code, "c.town": f.town, "c.village": f.village, "v.shop": f.shop, "v.subject": f.subject,
            **f.span("v.time")}


def _case_filters(f: Filters, level, assignee) -> dict:
    return {"town": f.town, "village": f.village, "level": level, "assignee": assignee, "shop": f.shop,
            "subject": f.subject, **f.span("opened")}


@router.get("/api/violations/groups", tags=["violations"], responses=FILE_RESPONSES)
def violation_groups(list_: Literal["queue", "watch"] = Query("queue", alias="list"), f: Filters = Depends(filters),
                     fmt: Format = Query("json", alias="format"), page: Page = Depends(paging),
                     user: User = Depends(current_user), ctx: Context = Depends(context)):
    """Violations grouped by kind, terminal and subject (a count, the first and
    last time, the latest's record and case), most severe first. `list=watch`:
    the rules' watch list (`[queue] watch`: rankings and fleet health by
    default) instead of what goes to inspectors. Filters: `from`, `to`
    (local days, on the finding's time), `town`, `village`, `shop`,
    `subject`, `code`; `format=csv|xlsx`: the whole filtered list as a file."""
    conn = ctx.db.conn()
    out = queries.violation_groups(conn, user, ctx.cfg, list_ == "watch", _violation_filters(f), page.page,
                                   page.per_page if fmt == "json" else None)
    names = ctx.names(conn, [g["subject"] for g in out["groups"]])
    for g in out["groups"]:
        g["subject_name"] = names.subject(g["subject"]) if g["subject"] else None
        g["sentence"] = words.describe(g["code"], g["detail"], names, g["seq"])
    if fmt != "json":
        title = "关注清单" if list_ == "watch" else "违规记录"
        return file_response(fmt, exports.GROUP_COLUMNS, exports.group_rows(out["groups"], ctx.tz), title,
                             "watch" if list_ == "watch" else "violations")
    return out


@router.get("/api/queue", tags=["cases"], responses=FILE_RESPONSES)
def inspection_queue(state: Literal["open", "assigned", "inspected", "closed", "active", "all"] = "active",
                     level: Literal["village", "town", "district"] | None = None,
                     assignee: Ident | None = None, f: Filters = Depends(filters),
                     fmt: Format = Query("json", alias="format"),
                     page: Page = Depends(paging), user: User = Depends(current_user),
                     ctx: Context = Depends(context)):
    """The inspection queue: the rules' severity of a case's worst finding
    first (`[severity]`), then the nearest deadline; cases whose findings are
    all on the watch list are not in it. `from`/`to` filter on the day the
    case was opened; `format=csv|xlsx`: the whole filtered queue as a file."""
    out = queries.queue(ctx.db.conn(), user, ctx.cfg, ctx.clock(), None if state == "all" else state,
                        _case_filters(f, level, assignee), f.code, page.page,
                        page.per_page if fmt == "json" else None)
    if fmt != "json":
        return file_response(fmt, exports.CASE_COLUMNS, exports.case_rows(out["cases"], ctx.tz), "检查队列", "queue")
    return out


@router.get("/api/cases", tags=["cases"], responses=FILE_RESPONSES)
def list_cases(state: Literal["open", "assigned", "inspected", "closed", "active"] | None = None,
               level: Literal["village", "town", "district"] | None = None,
               assignee: Ident | None = None, f: Filters = Depends(filters),
               fmt: Format = Query("json", alias="format"),
               before_id: int | None = Query(None, ge=1, le=MAX_ID),
               limit: int = Query(50, ge=1, le=200), user: User = Depends(current_user),
               ctx: Context = Depends(context)):
    """The case queue, newest first; `state=active` is everything not closed."""
    found = queries.case_list(ctx.db.conn(), user, ctx.clock(), state, _case_filters(f, level, assignee), f.code,
                              before_id, limit if fmt == "json" else None)
    if fmt != "json":
        return file_response(fmt, exports.CASE_COLUMNS, exports.case_rows(found, ctx.tz), "案件", "cases")
    return {"cases": found}


@router.get("/api/cases/{case_id}/sheet.pdf", tags=["cases"], response_class=Response,
            responses={200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}}})
def inspection_sheet_pdf(case_id: int = Path(ge=1, le=MAX_ID), user: User = Depends(current_user),
                         ctx: Context = Depends(context)) -> Response:
    """现场检查记录表: the case as a sheet an inspector prints and takes to
    the shop (gateway/supervision/inspection_sheet.py); the same area check
    as the case page."""
    case_or_404(ctx, user, case_id)
    sheet = inspection_sheet.gather(ctx.db.conn(), case_id, ctx.clock())
    if sheet is None:
        raise ApiError(404, "not_found", str(case_id))
    return Response(inspection_sheet.render(sheet), media_type="application/pdf", headers={
        "Content-Disposition": f"inline; filename=\"case-{case_id}.pdf\""})


@router.get("/api/cases/{case_id}", tags=["cases"])
def get_case(case_id: int = Path(ge=1, le=MAX_ID), user: User = Depends(current_user),
             ctx: Context = Depends(context)) -> dict:
    case = case_or_404(ctx, user, case_id)
    conn, cfg = ctx.db.conn(), ctx.cfg
    case["timeline"] = cases.timeline(conn, case_id)
    case["violations"] = queries.case_violations(conn, case_id)
    names = ctx.names(conn, [case["subject"]])
    for v in case["violations"]:
        v["sentence"] = words.describe(v["code"], v["detail"], names, v["seq"])
    case["photos"] = queries.case_photos(conn, case_id)
    case["shop_name"] = queries.shop_names(conn).get(case["shop"])
    case["subject_name"] = names.subject(case["subject"]) if case["subject"] else None
    case["town_name"], case["village_name"] = (queries.area_name(conn, case["town"]),
                                               queries.area_name(conn, case["village"]))
    case["assignees"] = queries.assignees(conn, case)
    people = queries.user_names(conn)
    case["assignee_name"] = people.get(case["assignee"])
    case["user_names"] = {n: people.get(n, n) for n in
                          {*case["assignees"], *(e["actor"] for e in case["timeline"]), case["assignee"]} if n}
    if case["subject"]:
        case["grade"] = cases.grade(conn, case["subject"], ctx.clock(), cfg)
    case["pending_close"] = cases.proposal(conn, case_id)
    case["can_confirm"] = cases.may_confirm(user, case["pending_close"], cfg) and user.scope().covers(case)
    case["confirm_outcomes"] = cfg["cases"]["confirm_outcomes"]
    case["confirm_role"] = cfg["cases"]["confirm_role"]
    return case


def _act(ctx: Context, fn):
    with ctx.db.write() as conn:
        return fn(conn)


@router.post("/api/cases/{case_id}/assign", tags=["cases"])
def assign_case(body: Assign, case_id: int = Path(ge=1, le=MAX_ID), user: User = Depends(current_user),
                ctx: Context = Depends(context)) -> dict:
    case_or_404(ctx, user, case_id)
    return _act(ctx, lambda conn: cases.assign(conn, ctx.clock(), user, case_id, body.assignee, body.notes))


@router.post("/api/cases/{case_id}/inspect", tags=["cases"])
def inspect_case(body: Inspect, case_id: int = Path(ge=1, le=MAX_ID), user: User = Depends(current_user),
                 ctx: Context = Depends(context)) -> dict:
    case_or_404(ctx, user, case_id)
    return _act(ctx, lambda conn: cases.inspect(conn, ctx.clock(), user, case_id, body.result, body.notes))


@router.post("/api/cases/{case_id}/close", tags=["cases"],
             responses={202: {"description": "proposed: the outcome needs a second person's confirmation"}})
def close_case(body: Close, response: Response, case_id: int = Path(ge=1, le=MAX_ID),
               user: User = Depends(current_user), ctx: Context = Depends(context)) -> dict:
    """Close an inspected case. An outcome under the two-person rule (the
    rules' `cases.confirm_outcomes`, default penalised) is only proposed:
    202, the case stays inspected with `pending_close`, until another user
    of `cases.confirm_role` or above confirms it (`/confirm`)."""
    case_or_404(ctx, user, case_id)
    out = _act(ctx, lambda conn: cases.close(conn, ctx.clock(), user, case_id, body.outcome, body.notes, ctx.cfg))
    if out["state"] != "closed":
        response.status_code = 202
    return out


@router.post("/api/cases/{case_id}/confirm", tags=["cases"])
def confirm_close(body: Confirm, case_id: int = Path(ge=1, le=MAX_ID), user: User = Depends(current_user),
                  ctx: Context = Depends(context)) -> dict:
    """The second person on a proposed close: `confirm` closes with the
    proposed outcome (named again, so a changed proposal is not confirmed
    unseen), `reject` drops it (the proposer may withdraw it that way)."""
    case_or_404(ctx, user, case_id)
    return _act(ctx, lambda conn: cases.confirm(conn, ctx.clock(), user, case_id, body.decision, body.outcome,
                                                body.notes, ctx.cfg))


@router.post("/api/cases/{case_id}/photos", tags=["cases"],
             openapi_extra={"requestBody": {"required": True, "content": {
                 "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                 "image/png": {"schema": {"type": "string", "format": "binary"}}}}})
async def add_photo(request: Request, case_id: int = Path(ge=1, le=MAX_ID),
                    user: User = Depends(current_user), ctx: Context = Depends(context)) -> dict:
    """The photo is the raw request body (image/jpeg or image/png, at most 5 MB)."""
    data = await request.body()
    await run_in_threadpool(case_or_404, ctx, user, case_id)
    photo = await run_in_threadpool(
        _act, ctx, lambda conn: cases.add_photo(conn, ctx.clock(), user, case_id, data, ctx.photos))
    return {"id": photo}


@router.get("/api/cases/{case_id}/photos/{photo_id}", tags=["cases"], response_class=FileResponse)
def get_photo(case_id: int = Path(ge=1, le=MAX_ID), photo_id: int = Path(ge=1, le=MAX_ID),
              user: User = Depends(current_user), ctx: Context = Depends(context)):
    case_or_404(ctx, user, case_id)
    row = queries.case_photo(ctx.db.conn(), case_id, photo_id)
    if row is None or not FsPath(row["path"]).exists():
        raise ApiError(404, "not_found", str(photo_id))
    return FileResponse(row["path"], media_type=row["mime"])
