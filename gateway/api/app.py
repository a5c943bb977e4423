"""The supervision API: subjects and their quota use, shops and their ledgers,
terminals and their health, violations, cases and their transitions,
statistics; and the dashboard's static files and live event stream.

Every endpoint but login needs a token; every query is limited to the
caller's part of the grid (`users.Scope`), and asking for something outside it
by id is answered 404, by filter 403, so the API never confirms what exists
elsewhere. Registry fields reach each role by allowlist (`subjects_view.view`);
full ID numbers only district users who ask, audited. Reads of personal data
(a subject's page, a ledger) write an audit row. District-wide state (the
upstream feed) is for district users; the event stream looks at the caller's
area only. Writes need the bearer header (the cookie is accepted for GETs and
the event stream only), so another site cannot make a logged-in browser
change a case. Closing with an outcome under the two-person rule only
proposes it (`cases.close`, `/confirm`). Logins are throttled per client
address (gateway/api/throttle.py) and hash outside any transaction. The
security controls, where each is tested, and deployment over HTTPS and behind
a proxy: docs/security.md.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
import logging
import math
from pathlib import Path as FsPath
from typing import Callable, Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from gateway.supervision import cases, grid

from gateway import store

from gateway.enforcement import subjects_view

from gateway.store import users
from gateway.api.db import Db
from gateway.api.security import (HIDDEN_CHARACTERS, ID_PATTERN, Ident, LimitBody, Notes, SecurityHeaders,
                                  Secret)
from gateway.api.throttle import Busy, Hashing, LoginThrottle, client_key
from gateway.supervision.rules import config as rules_config
from gateway.supervision.rules import engine, local_parts
from gateway.store.users import User
from protocols import policy, reasons
from protocols.clock import real_ms, wall_ms as now_ms

log = logging.getLogger(__name__)

STATIC = FsPath(__file__).resolve().parent.parent / "dashboard" / "static"
COOKIE = "agri_token"
CASE_ERRORS = {"case_not_found": 404, "case_bad_transition": 409, "case_not_your_level": 403,
               "case_bad_input": 422, "case_assignee_unknown": 404, "photo_not_image": 415, "photo_size": 413,
               "case_notes_hidden_characters": 422, "case_no_proposal": 409, "case_proposal_changed": 409,
               "case_confirm_self": 403, "case_confirm_role": 403}
MAX_ID = 2 ** 62

reasons.register({
    "unauthenticated": ("请先登录", "log in first"),
    "malformed_request": ("请求格式错误", "malformed request"),
    "invalid_input": ("输入内容不符合要求", "invalid input"),
    "forbidden_area": ("不在您的辖区", "outside your area"),
    "forbidden_role": ("您的角色无权访问此内容", "not available to your role"),
    "not_found": ("不存在或不在您的辖区", "not found or not in your area"),
    "login_failed": ("用户名或密码错误", "wrong name or password"),
    "too_many_attempts": ("尝试次数过多，请稍后再试", "too many attempts, try again later"),
    "csrf_header_required": ("此操作需要令牌请求头", "this action needs the bearer header"),
    HIDDEN_CHARACTERS: ("文字中含有不可见或改变文字方向的字符，请删除后重试",
                        "the text contains invisible or text-direction characters; remove them"),
})


class ErrorBody(BaseModel):
    code: str
    message: str
    message_en: str
    detail: str | list = ""


ERROR_RESPONSES = {status: {"model": ErrorBody, "description": text} for status, text in (
    (400, "malformed request"), (401, "not logged in, or the token expired"), (403, "outside your area or role"),
    (404, "not found or not in your area"), (409, "the case's state does not allow this"),
    (413, "body too large"), (415, "a photo must be JPEG or PNG"), (422, "invalid input"), (429, "too many login attempts"))}


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str = "", headers: dict | None = None):
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


def _error(status: int, code: str, detail: str = "", headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": reasons.text(code, "zh"), "message_en": reasons.text(code, "en"),
                         "detail": detail[:300]}, status_code=status, headers=headers)


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Ident
    password: Secret


class Assign(BaseModel):
    model_config = ConfigDict(extra="forbid")
    assignee: Ident
    notes: Notes | None = None


class Inspect(BaseModel):
    model_config = ConfigDict(extra="forbid")
    result: Literal["violation_found", "no_violation_found", "rectified_on_site"]
    notes: Notes | None = None


class Close(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Literal["confirmed", "dismissed", "penalised"]
    notes: Notes | None = None


class Confirm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["confirm", "reject"]
    outcome: Literal["confirmed", "dismissed", "penalised"]
    notes: Notes | None = None


def default_photos_dir(db: str | FsPath) -> FsPath:
    """Inspection photos live next to a SQLite database (gateway.db.photos);
    a database on a server has no "next to", so the directory must be named
    (--photos)."""
    if store.is_postgres(db):
        raise ValueError("--photos DIR is needed with a database on a server: where to keep inspection photos")
    path = store.sqlite_path(db)
    return path.with_name(path.name + ".photos")


def create_app(db_path: str | FsPath, clock: Callable[[], int] = now_ms,
               rules_cfg: dict | None = None, photos_dir: str | FsPath | None = None,
               params: dict | None = None, token_ttl_ms: int = users.TOKEN_TTL_MS,
               sse_interval: float = 1.0, session_clock: Callable[[], int] = real_ms,
               login_throttle: LoginThrottle | None = None, trusted_proxies=()) -> FastAPI:
    """`clock` is the district's calendar (virtual in a simulation);
    `session_clock` times logins, which belong to the person at the screen.
    `trusted_proxies`: addresses or networks of reverse proxies whose
    X-Forwarded-For and X-Forwarded-Proto count (gateway/api/serve.py);
    from anyone else the headers are ignored."""
    db = Db(db_path)
    cfg = rules_cfg or rules_config.load()
    tz = cfg["grid"]["tz_minutes"]
    photos = FsPath(photos_dir or default_photos_dir(db_path))
    policy_params = params or engine.load_params()
    throttle = login_throttle or LoginThrottle()
    hashing = Hashing()
    stopping = {"flag": False}

    db.conn()  # opened (and migrated) before the first request

    @asynccontextmanager
    async def lifespan(app):
        yield
        stopping["flag"] = True  # ends open event streams so the server can stop

    def dependants(request: Request) -> list:
        """The matched route's dependency tree, flattened."""
        dependant = getattr(request.scope.get("route"), "dependant", None)
        out, stack = [], [dependant] if dependant else []
        while stack:
            d = stack.pop()
            out.append(d)
            stack.extend(d.dependencies)
        return out

    def strict_query(request: Request) -> None:
        """Unknown query parameters are an error, not something to ignore: a
        misspelt filter must not silently return the unfiltered list. Raised as
        a validation error, so it waits for authentication like the others."""
        known = {p.alias for d in dependants(request) for p in d.query_params}
        unknown = [k for k in request.query_params.keys() if k not in known]
        if unknown:
            raise RequestValidationError([{"type": "extra_forbidden", "loc": ("query", unknown[0][:40]),
                                           "msg": "unknown query parameter"}])

    app = FastAPI(title="agri-quota supervision API", version="1", lifespan=lifespan, responses=ERROR_RESPONSES,
                  dependencies=[Depends(strict_query)],
                  description="District supervision of real-name, quota-limited agri-input sales. "
                              "Bearer token from POST /api/login.")
    app.add_middleware(LimitBody)
    app.add_middleware(SecurityHeaders)
    # outermost: the client address and scheme are settled before anything reads them
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(trusted_proxies))
    bearer = HTTPBearer(auto_error=False)

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return _error(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        code = {400: "malformed_request", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = _error(exc.status_code, code, str(exc.detail))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(cases.CaseError)
    async def _case_error(request, exc: cases.CaseError):
        return _error(CASE_ERRORS.get(exc.code, 400), exc.code, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        """Authentication comes before any verdict on the input: FastAPI parses
        a JSON body, and the app-wide `strict_query` runs, before a route's own
        dependencies, so an anonymous caller would otherwise learn which
        parameters and fields a route takes."""
        refused = await run_in_threadpool(anonymous, request)
        if refused is not None:
            return _error(refused.status, refused.code, refused.detail)
        errors = exc.errors()
        code = HIDDEN_CHARACTERS if errors and all(e.get("type") == HIDDEN_CHARACTERS for e in errors) \
            else "invalid_input"
        return JSONResponse({"code": code, "message": reasons.text(code, "zh"),
                             "message_en": reasons.text(code, "en"),
                             "detail": [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", ""))[:200],
                                         "type": str(e.get("type", ""))}
                                        for e in errors[:10]]}, status_code=422)

    # -- auth

    def current_user(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> User:
        return authenticate(request, creds.credentials if creds and creds.scheme.lower() == "bearer" else None)

    def anonymous(request: Request) -> ApiError | None:
        """The refusal a route that needs a user owes this request, if any."""
        if not any(d.call is current_user for d in dependants(request)):
            return None
        scheme, credentials = get_authorization_scheme_param(request.headers.get("Authorization"))
        try:
            authenticate(request, credentials if scheme.lower() == "bearer" and credentials else None)
        except ApiError as refused:
            return refused
        return None

    def authenticate(request: Request, token: str | None) -> User:
        if token is None and request.method == "GET":
            token = request.cookies.get(COOKIE)
        if token is None and request.method != "GET" and request.cookies.get(COOKIE):
            raise ApiError(403, "csrf_header_required")
        user = users.by_token(db.conn(), token or "", session_clock())
        if user is None:
            raise ApiError(401, "unauthenticated")
        request.state.token = token
        return user

    def area_visible(user: User, code: str) -> bool:
        """Is grid area `code` inside the user's area (itself or below)?"""
        seen = 0
        while code and seen < 4:
            if code == user.area:
                return True
            row = db.conn().execute("SELECT parent FROM areas WHERE code=?", [code]).fetchone()
            code = row[0] if row else None
            seen += 1
        return False

    def shop_or_404(user: User, shop_id: str) -> dict:
        row = db.one("SELECT id, name, village, town, district, designated, hours, lat, lon, address FROM shops "
                     "WHERE id=?", [shop_id])
        if row is None or not user.scope().covers(row):
            raise ApiError(404, "not_found", shop_id)
        return row

    def case_or_404(user: User, case_id: int) -> dict:
        case = cases.get(db.conn(), case_id)
        if case is None or not user.scope().covers(case):
            raise ApiError(404, "not_found", str(case_id))
        return case

    def terminal_or_404(user: User, terminal: str) -> dict:
        row = db.one("SELECT t.id, t.shop, s.village, s.town, s.district FROM terminals t "
                     "LEFT JOIN shops s ON s.id = t.shop WHERE t.id=?", [terminal])
        if row is None or not user.scope().covers(row):
            raise ApiError(404, "not_found", terminal)
        return row

    def today() -> str:
        return local_parts(clock(), tz)[0]

    def area_name(code: str | None) -> str | None:
        if not code:
            return None
        row = db.conn().execute("SELECT name FROM areas WHERE code=?", [code]).fetchone()
        return row[0] if row else None

    @app.post("/api/login", tags=["auth"])
    async def login(body: Login, request: Request, response: Response) -> dict:
        """A bearer token (and the same as an HttpOnly cookie for the dashboard's
        GETs, `Secure` over HTTPS). Throttled per client address and per
        (address, name), never per account alone (gateway/api/throttle.py);
        the password check runs outside any transaction."""
        address = client_key(request.client.host if request.client else None)
        wait = throttle.check(address, body.name)
        if wait > 0:
            await asyncio.sleep(min(wait, throttle.limits.tarpit_s))
            raise ApiError(429, "too_many_attempts", headers={"Retry-After": str(max(1, math.ceil(wait)))})
        stored = await run_in_threadpool(lambda: users.stored_credentials(db.conn(), body.name))
        try:
            ok = await hashing.run(lambda: users.verify(body.password, stored))
        except Busy:
            raise ApiError(429, "too_many_attempts", "busy", headers={"Retry-After": "1"}) from None
        result = None
        if ok:
            result = await run_in_threadpool(
                lambda: users.issue_token(db.conn(), stored, session_clock(), token_ttl_ms))
        if result is None:
            throttle.failed(address, body.name)
            raise ApiError(401, "login_failed")
        throttle.succeeded(address, body.name)
        token, user = result
        response.set_cookie(COOKIE, token, max_age=token_ttl_ms // 1000, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return {"token": token, "expires": session_clock() + token_ttl_ms,
                "user": {"name": user.name, "role": user.role, "area": user.area,
                         "area_name": await run_in_threadpool(area_name, user.area)}}

    @app.post("/api/logout", tags=["auth"])
    def logout(request: Request, response: Response, user: User = Depends(current_user),
               creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> dict:
        with db.write() as conn:
            users.logout(conn, creds.credentials)
        response.delete_cookie(COOKIE, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return {"ok": True}

    @app.get("/api/me", tags=["auth"])
    def me(user: User = Depends(current_user)) -> dict:
        return {"name": user.name, "role": user.role, "area": user.area, "area_name": area_name(user.area)}

    @app.get("/api/codes", tags=["reference"])
    def codes(user: User = Depends(current_user)) -> dict:
        """Texts of every reason code in Chinese and English, for the dashboard."""
        return {code: {"zh": reasons.text(code, "zh"), "en": reasons.text(code, "en")} for code in reasons.codes()}

    # -- overview and statistics

    def child_level(user: User) -> str:
        return {"district": "town", "town": "village", "village": "village"}[user.role]

    @app.get("/api/overview", tags=["statistics"])
    def overview(user: User = Depends(current_user)) -> dict:
        """Today's sales, refusals and open cases per town (per village for a town user)."""
        where, args = user.scope().where()
        group = child_level(user)
        day = today()
        out: dict[str, dict] = {}
        for code, rtype, n in db.conn().execute(
                f"SELECT {group}, type, count(*) FROM sales WHERE day=? AND {where} GROUP BY {group}, type",
                [day] + args):
            row = out.setdefault(code or "", {"code": code, "sales": 0, "refusals": 0, "voids": 0, "open_cases": 0})
            row[{"sale": "sales", "refusal": "refusals", "void": "voids"}[rtype]] = n
        for code, n in db.conn().execute(
                f"SELECT {group}, count(*) FROM cases WHERE state != 'closed' AND {where} GROUP BY {group}", args):
            out.setdefault(code or "", {"code": code, "sales": 0, "refusals": 0, "voids": 0, "open_cases": 0})[
                "open_cases"] = n
        names = grid.area_names(db.conn())
        groups = sorted(out.values(), key=lambda r: (r["code"] is None, r["code"] or ""))
        for g in groups:
            g["name"] = names.get(g["code"]) if g["code"] else None
        totals = {k: sum(g[k] for g in groups) for k in ("sales", "refusals", "voids", "open_cases")}
        fleet = fleet_rows(user)
        return {"day": day, "level": group, "groups": groups, "totals": totals,
                "fleet": {"total": len(fleet), "online": sum(1 for t in fleet if t["state"] == "online")}}

    @app.get("/api/stats/daily", tags=["statistics"])
    def stats_daily(days: int = Query(30, ge=1, le=366), user: User = Depends(current_user)) -> dict:
        """Purchases per product kind per day (g or mL of product), for the chart."""
        where, args = user.scope().where()
        end = clock()
        start_day = local_parts(end - (days - 1) * 86_400_000, tz)[0]
        rows = db.rows(f"SELECT day, count(*) FILTER (WHERE type='sale') AS sales, "
                       f"count(*) FILTER (WHERE type='refusal') AS refusals, "
                       f"sum(pesticide) AS pesticide, sum(fertilizer) AS fertilizer FROM sales "
                       f"WHERE day >= ? AND day <= ? AND {where} GROUP BY day ORDER BY day",
                       [start_day, today()] + args)
        return {"from": start_day, "to": today(), "days": rows}

    @app.get("/api/stats/quota", tags=["statistics"])
    def stats_quota(user: User = Depends(current_user)) -> dict:
        """Quota use per town and category this period: used against the sum of allowances."""
        conn = db.conn()
        date = today()
        totals: dict[tuple, dict] = {}
        subjects_rows = conn.execute("SELECT id, town, data FROM subjects").fetchall() if subjects_view.registry_known(
            conn) else []
        for sid, town, data in subjects_rows:
            if not town or not area_visible(user, town):
                continue
            try:
                entry = json.loads(data)
            except ValueError:
                continue
            for cat in sorted(policy_params.get("categories", {})):
                period = policy.period_of(policy_params, cat, date)
                row = totals.setdefault((town, cat), {"town": town, "category": cat, "period": period,
                                                      "allowance": 0, "used": 0})
                row["allowance"] += policy.allowance(entry, policy_params, cat, period)
        for (town, cat), row in totals.items():
            used = conn.execute("SELECT coalesce(sum(q.used), 0) FROM quota_used q JOIN subjects s ON s.id = q.subject "
                                "WHERE s.town=? AND q.category=? AND q.period=?", [town, cat, row["period"]]).fetchone()
            row["used"] = used[0]
            row["name"] = area_name(town)
        return {"towns": sorted(totals.values(), key=lambda r: (r["town"], r["category"]))}

    # -- violations and cases

    @app.get("/api/violations", tags=["violations"])
    def list_violations(code: Ident | None = None, town: Ident | None = None, subject: Ident | None = None,
                        before_id: int | None = Query(None, ge=1, le=MAX_ID), limit: int = Query(50, ge=1, le=200),
                        user: User = Depends(current_user)) -> dict:
        if town and not area_visible(user, town):
            raise ApiError(403, "forbidden_area", town)
        where, args = user.scope().where("c.")
        sql = ("SELECT v.id, v.time, v.code, v.subject, v.shop, v.terminal, v.seq, v.detail, cv.case_id, "
               "c.town, c.village FROM violations v JOIN case_violations cv ON cv.violation = v.id "
               f"JOIN cases c ON c.id = cv.case_id WHERE {where}")
        if code:
            sql += " AND v.code = ?"
            args.append(code)
        if town:
            sql += " AND c.town = ?"
            args.append(town)
        if subject:
            sql += " AND v.subject = ?"
            args.append(subject)
        if before_id:
            sql += " AND v.id < ?"
            args.append(before_id)
        sql += " ORDER BY v.id DESC LIMIT ?"
        rows = db.rows(sql, args + [limit])
        for r in rows:
            r["detail"] = json.loads(r["detail"])
        return {"violations": rows}

    @app.get("/api/cases", tags=["cases"])
    def list_cases(state: Literal["open", "assigned", "inspected", "closed", "active"] | None = None,
                   code: Ident | None = None, town: Ident | None = None, level: Literal["village", "town", "district"] | None = None,
                   assignee: Ident | None = None, shop: Ident | None = None, subject: Ident | None = None,
                   before_id: int | None = Query(None, ge=1, le=MAX_ID),
                   limit: int = Query(50, ge=1, le=200), user: User = Depends(current_user)) -> dict:
        """The case queue, newest first; `state=active` is everything not closed."""
        if town and not area_visible(user, town):
            raise ApiError(403, "forbidden_area", town)
        where, args = user.scope().where()
        sql = f"SELECT {', '.join(cases.CASE_COLUMNS)} FROM cases WHERE {where}"
        if state == "active":
            sql += " AND state IN ('open', 'assigned', 'inspected')"
        elif state:
            sql += " AND state = ?"
            args.append(state)
        for column, value in (("town", town), ("level", level), ("assignee", assignee), ("shop", shop),
                              ("subject", subject)):
            if value:
                sql += f" AND {column} = ?"
                args.append(value)
        if code:
            sql += " AND (',' || codes || ',') LIKE ?"
            args.append(f"%,{code},%")
        if before_id:
            sql += " AND id < ?"
            args.append(before_id)
        sql += " ORDER BY id DESC LIMIT ?"
        rows = db.rows(sql, args + [limit])
        names = grid.area_names(db.conn()) if rows else {}
        shop_names = dict(db.conn().execute("SELECT id, name FROM shops")) if rows else {}
        for r in rows:
            r["town_name"] = names.get(r["town"])
            r["village_name"] = names.get(r["village"])
            r["shop_name"] = shop_names.get(r["shop"])
            r["overdue"] = r["state"] in ("open", "assigned") and (r["deadline"] or 0) < clock()
        return {"cases": rows}

    @app.get("/api/cases/{case_id}", tags=["cases"])
    def get_case(case_id: int = Path(ge=1, le=MAX_ID), user: User = Depends(current_user)) -> dict:
        case = case_or_404(user, case_id)
        conn = db.conn()
        case["timeline"] = cases.timeline(conn, case_id)
        case["violations"] = db.rows(
            "SELECT v.id, v.time, v.code, v.subject, v.shop, v.terminal, v.seq, v.detail FROM case_violations cv "
            "JOIN violations v ON v.id = cv.violation WHERE cv.case_id=? ORDER BY v.id", [case_id])
        for v in case["violations"]:
            v["detail"] = json.loads(v["detail"])
        case["photos"] = db.rows("SELECT id, time, actor, mime, size, sha256 FROM case_photos WHERE case_id=? "
                                 "ORDER BY id", [case_id])
        case["shop_name"] = (db.one("SELECT name FROM shops WHERE id=?", [case["shop"]]) or {}).get("name")
        case["town_name"], case["village_name"] = area_name(case["town"]), area_name(case["village"])
        case["assignees"] = [r["name"] for r in db.rows(
            "SELECT name, role, area FROM users WHERE disabled=0 ORDER BY name")
            if User(0, r["name"], r["role"], r["area"]).scope().covers(case)]
        if case["subject"]:
            case["grade"] = cases.grade(conn, case["subject"], clock(), cfg)
        case["pending_close"] = cases.proposal(conn, case_id)
        case["can_confirm"] = cases.may_confirm(user, case["pending_close"], cfg) and user.scope().covers(case)
        case["confirm_outcomes"] = cfg["cases"]["confirm_outcomes"]
        case["confirm_role"] = cfg["cases"]["confirm_role"]
        return case

    def _act(fn):
        try:
            with db.write() as conn:
                return fn(conn)
        except cases.CaseError:
            raise

    @app.post("/api/cases/{case_id}/assign", tags=["cases"])
    def assign_case(body: Assign, case_id: int = Path(ge=1, le=MAX_ID), user: User = Depends(current_user)) -> dict:
        case_or_404(user, case_id)
        return _act(lambda conn: cases.assign(conn, clock(), user, case_id, body.assignee, body.notes))

    @app.post("/api/cases/{case_id}/inspect", tags=["cases"])
    def inspect_case(body: Inspect, case_id: int = Path(ge=1, le=MAX_ID), user: User = Depends(current_user)) -> dict:
        case_or_404(user, case_id)
        return _act(lambda conn: cases.inspect(conn, clock(), user, case_id, body.result, body.notes))

    @app.post("/api/cases/{case_id}/close", tags=["cases"],
              responses={202: {"description": "proposed: the outcome needs a second person's confirmation"}})
    def close_case(body: Close, response: Response, case_id: int = Path(ge=1, le=MAX_ID),
                   user: User = Depends(current_user)) -> dict:
        """Close an inspected case. An outcome under the two-person rule (the
        rules' `cases.confirm_outcomes`, default penalised) is only proposed:
        202, the case stays inspected with `pending_close`, until another user
        of `cases.confirm_role` or above confirms it (`/confirm`)."""
        case_or_404(user, case_id)
        out = _act(lambda conn: cases.close(conn, clock(), user, case_id, body.outcome, body.notes, cfg))
        if out["state"] != "closed":
            response.status_code = 202
        return out

    @app.post("/api/cases/{case_id}/confirm", tags=["cases"])
    def confirm_close(body: Confirm, case_id: int = Path(ge=1, le=MAX_ID), user: User = Depends(current_user)) -> dict:
        """The second person on a proposed close: `confirm` closes with the
        proposed outcome (named again, so a changed proposal is not confirmed
        unseen), `reject` drops it (the proposer may withdraw it that way)."""
        case_or_404(user, case_id)
        return _act(lambda conn: cases.confirm(conn, clock(), user, case_id, body.decision, body.outcome,
                                               body.notes, cfg))

    @app.post("/api/cases/{case_id}/photos", tags=["cases"],
              openapi_extra={"requestBody": {"required": True, "content": {
                  "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                  "image/png": {"schema": {"type": "string", "format": "binary"}}}}})
    async def add_photo(request: Request, case_id: int = Path(ge=1, le=MAX_ID),
                        user: User = Depends(current_user)) -> dict:
        """The photo is the raw request body (image/jpeg or image/png, at most 5 MB)."""
        data = await request.body()
        await run_in_threadpool(case_or_404, user, case_id)
        photo = await run_in_threadpool(
            _act, lambda conn: cases.add_photo(conn, clock(), user, case_id, data, photos))
        return {"id": photo}

    @app.get("/api/cases/{case_id}/photos/{photo_id}", tags=["cases"], response_class=FileResponse)
    def get_photo(case_id: int = Path(ge=1, le=MAX_ID), photo_id: int = Path(ge=1, le=MAX_ID),
                  user: User = Depends(current_user)):
        case_or_404(user, case_id)
        row = db.one("SELECT path, mime FROM case_photos WHERE id=? AND case_id=?", [photo_id, case_id])
        if row is None or not FsPath(row["path"]).exists():
            raise ApiError(404, "not_found", str(photo_id))
        return FileResponse(row["path"], media_type=row["mime"])

    # -- subjects

    def subject_visible(user: User, subject: str) -> bool:
        where, args = user.scope().where()
        conn = db.conn()
        if conn.execute(f"SELECT 1 FROM sales WHERE subject=? AND {where} LIMIT 1", [subject] + args).fetchone():
            return True
        if conn.execute(f"SELECT 1 FROM cases WHERE subject=? AND {where} LIMIT 1", [subject] + args).fetchone():
            return True
        entry = subjects_view.lookup(conn, subject)
        home = (entry or {}).get("town") or (entry or {}).get("village")
        return bool(home) and area_visible(user, home)

    @app.get("/api/subjects/{subject_id}", tags=["subjects"])
    def get_subject(subject_id: str = Path(pattern=ID_PATTERN), reveal: bool = Query(False),
                    user: User = Depends(current_user)) -> dict:
        """A subject: registry entry (the fields the caller's role may see, by
        allowlist; ID numbers and phones masked), credit grade, allowance, used
        and remaining per category, purchases in the caller's area. Audited.
        `reveal=true`: the full ID numbers, for district users only, each such
        read audited as `read_id_number`."""
        if reveal and user.role not in subjects_view.REVEALABLE:
            raise ApiError(403, "forbidden_role", "full ID numbers are for district staff")
        if not subject_visible(user, subject_id):
            raise ApiError(404, "not_found", subject_id)
        conn = db.conn()
        entry = subjects_view.lookup(conn, subject_id)
        balances: dict = {}
        for cat, period, used in conn.execute("SELECT category, period, used FROM quota_used WHERE subject=?",
                                              [subject_id]):
            balances.setdefault(cat, {})[period] = used
        balance = None
        if entry is not None:
            try:
                balance = policy.balance(entry, balances, policy_params, today())
            except policy.PolicyError:
                balance = None
        where, args = user.scope().where("s.")
        purchases = db.rows(
            "SELECT s.terminal, s.seq, s.type, s.time, s.shop, s.identity, s.mode, s.pesticide, s.fertilizer, "
            f"r.record FROM sales s JOIN records r ON r.terminal = s.terminal AND r.seq = s.seq "
            f"WHERE s.subject=? AND {where} ORDER BY s.time DESC LIMIT 100", [subject_id] + args)
        for p in purchases:
            body = json.loads(p.pop("record"))["body"]
            p["items"] = [{"product": i.get("product"), "packs": i.get("packs")} for i in body.get("items", [])]
            p["reasons"] = body.get("reasons", [])
        registry, revealed = subjects_view.view(entry, user.role, reveal)
        with db.write() as w:
            users.audit(w, clock(), user, "read_subject", subject_id)
            if revealed:
                users.audit(w, clock(), user, "read_id_number", subject_id, ",".join(revealed))
        return {"id": subject_id, "registry": registry, "grade": cases.grade(conn, subject_id, clock(), cfg),
                "balance": balance, "purchases": purchases,
                "cases": db.rows(f"SELECT id, state, codes, outcome, opened, closed FROM cases WHERE subject=? AND "
                                 f"{user.scope().where()[0]} ORDER BY id DESC LIMIT 50",
                                 [subject_id] + user.scope().where()[1])}

    # -- shops, terminals, records

    def fleet_rows(user: User, shop: str | None = None) -> list[dict]:
        where, args = user.scope().where("s.")
        sql = ("SELECT t.id, t.shop, s.name AS shop_name, s.town, s.village, t.state, t.last_seen, t.acked_upto, "
               "t.head, st.versions, st.skew_ms, st.status_time FROM terminals t LEFT JOIN shops s ON s.id = t.shop "
               f"LEFT JOIN terminal_status st ON st.terminal = t.id WHERE {where}")
        if shop:
            sql += " AND t.shop = ?"
            args.append(shop)
        rows = db.rows(sql + " ORDER BY t.id", args)
        now = clock()
        silent_ms = cfg["silent"]["minutes"] * 60_000
        for r in rows:
            r["versions"] = json.loads(r["versions"]) if r["versions"] else {}
            r["backlog"] = max(0, (r["head"] or 0) - (r["acked_upto"] or 0))
            r["silent"] = r["last_seen"] is None or now - r["last_seen"] > silent_ms
        return rows

    @app.get("/api/terminals", tags=["fleet"])
    def terminals_(user: User = Depends(current_user)) -> dict:
        """Terminals in the area: online/offline from their retained status, last
        seen, upload backlog, software versions and clock skew."""
        return {"terminals": fleet_rows(user), "now": clock()}

    @app.get("/api/shops", tags=["shops"])
    def list_shops(town: Ident | None = None, user: User = Depends(current_user)) -> dict:
        if town and not area_visible(user, town):
            raise ApiError(403, "forbidden_area", town)
        where, args = user.scope().where()
        sql = f"SELECT id, name, village, town, district, designated, hours FROM shops WHERE {where}"
        if town:
            sql += " AND town = ?"
            args.append(town)
        rows = db.rows(sql + " ORDER BY id", args)
        names = grid.area_names(db.conn())
        for r in rows:
            r["town_name"], r["village_name"] = names.get(r["town"]), names.get(r["village"])
        return {"shops": rows}

    @app.get("/api/shops/{shop_id}", tags=["shops"])
    def get_shop(shop_id: str = Path(pattern=ID_PATTERN), before_time: int | None = Query(None, ge=0, le=MAX_ID),
                 user: User = Depends(current_user)) -> dict:
        """A shop with its terminals' status, open cases and its ledger, newest first. Audited."""
        shop = shop_or_404(user, shop_id)
        args = [shop_id]
        sql = ("SELECT s.terminal, s.seq, s.type, s.time, s.subject, s.identity, s.mode, r.record FROM sales s "
               "JOIN records r ON r.terminal = s.terminal AND r.seq = s.seq WHERE s.shop = ?")
        if before_time is not None:
            sql += " AND s.time < ?"
            args.append(before_time)
        ledger = db.rows(sql + " ORDER BY s.time DESC LIMIT 100", args)
        for row in ledger:
            body = json.loads(row.pop("record"))["body"]
            row["items"] = [{"product": i.get("product"), "packs": i.get("packs")} for i in body.get("items", [])]
            row["reasons"] = body.get("reasons", [])
        shop["town_name"], shop["village_name"] = area_name(shop["town"]), area_name(shop["village"])
        with db.write() as w:
            users.audit(w, clock(), user, "read_ledger", shop_id)
        return {"shop": shop, "terminals": fleet_rows(user, shop_id), "ledger": ledger,
                "cases": db.rows("SELECT id, state, subject, codes, level, assignee, opened FROM cases "
                                 "WHERE shop=? AND state != 'closed' ORDER BY id DESC LIMIT 50", [shop_id])}

    @app.get("/api/records", tags=["shops"])
    def list_records(terminal: Ident, before_seq: int | None = Query(None, ge=1, le=MAX_ID),
                     limit: int = Query(50, ge=1, le=500), user: User = Depends(current_user)) -> dict:
        """A terminal's stored records verbatim (as signed), newest first. Audited."""
        terminal_or_404(user, terminal)
        sql, args = "SELECT seq, received, record FROM records WHERE terminal=?", [terminal]
        if before_seq:
            sql += " AND seq < ?"
            args.append(before_seq)
        rows = db.rows(sql + " ORDER BY seq DESC LIMIT ?", args + [limit])
        for r in rows:
            r["record"] = json.loads(r["record"])
        with db.write() as w:
            users.audit(w, clock(), user, "read_records", terminal)
        return {"records": rows}

    # -- upstream, audit

    @app.get("/api/upstream", tags=["upstream"])
    def upstream_state(user: User = Depends(current_user)) -> dict:
        """The feed to the provincial platform: district-wide, so district staff only."""
        if user.role != "district":
            raise ApiError(403, "forbidden_role", "the upstream feed is for district staff")
        state = db.one("SELECT last_attempt, last_success, last_error, failures, next_attempt, sent_upto "
                       "FROM upstream_state WHERE id=1") or {}
        pending = db.conn().execute("SELECT count(*), min(created) FROM outbox WHERE sent IS NULL").fetchone()
        return {**state, "pending": pending[0], "oldest_pending": pending[1],
                "sent": db.conn().execute("SELECT count(*) FROM outbox WHERE sent IS NOT NULL").fetchone()[0]}

    @app.get("/api/audit", tags=["audit"])
    def audit_log(target: Ident | None = None, limit: int = Query(100, ge=1, le=500),
                  user: User = Depends(current_user)) -> dict:
        """Who read which personal data when: district staff only."""
        if user.role != "district":
            raise ApiError(403, "forbidden_area", "audit log is for district staff")
        sql, args = 'SELECT id, time, "user", role, area, action, target, detail FROM audit_log', []
        if target:
            sql += " WHERE target=?"
            args.append(target)
        return {"entries": db.rows(sql + " ORDER BY id DESC LIMIT ?", args + [limit])}

    # -- live updates

    def version(user: User) -> dict:
        """What the caller's stream compares, tick by tick, from the caller's
        area only, never a district-wide id (whose jumps would tell a village
        user how busy the rest of the district is); the upstream queue for
        district users only. Opaque values: only their changes mean anything.
        Cases: every case change moves the case's `updated`, so the count,
        the latest and the sum of `updated` change with it, from one scan of
        the area's cases (counting their events instead cost ten times as
        much for a district); violations: each one filed adds to its case's
        count."""
        conn = db.conn()
        where, args = user.scope().where()
        swhere, sargs = user.scope().where("s.")
        n, latest, total, filed = conn.execute(
            "SELECT count(*), coalesce(max(updated), 0), coalesce(sum(updated), 0), coalesce(sum(violations), 0) "
            f"FROM cases WHERE {where}", args).fetchone()
        out = {
            "cases": f"{n}:{latest}:{total}",
            "violations": filed,
            "fleet": conn.execute("SELECT count(*) FILTER (WHERE t.state='online') || ':' || coalesce(max(t.last_seen), 0) "
                                  f"FROM terminals t LEFT JOIN shops s ON s.id = t.shop WHERE {swhere}",
                                  sargs).fetchone()[0],
            "sales": conn.execute(f"SELECT count(*) FROM sales WHERE day=? AND {where}", [today()] + args).fetchone()[0],
        }
        if user.role == "district":
            out["upstream"] = conn.execute("SELECT count(*) FROM outbox WHERE sent IS NULL").fetchone()[0]
        return out

    def still_valid(token: str) -> bool:
        return users.by_token(db.conn(), token, session_clock()) is not None

    @app.get("/api/events", include_in_schema=False)
    async def events(request: Request, user: User = Depends(current_user)):
        """Server-sent events: one `change` event naming what changed in the
        caller's area (cases, violations, fleet, sales; upstream for district
        users) whenever it does; the page refetches. The token is checked
        again on every tick: a stream ends (`end` event) as soon as its
        session does (logout, expiry, password reset, disabled user)."""
        token = request.state.token

        async def stream():
            last = None
            beat = 0
            while not stopping["flag"]:
                if await request.is_disconnected():
                    break
                if not await run_in_threadpool(still_valid, token):
                    yield 'event: end\ndata: {"code": "unauthenticated"}\n\n'
                    break
                now_v = await run_in_threadpool(version, user)
                if now_v != last:
                    changed = [k for k in now_v if last is None or now_v[k] != last[k]]
                    yield f"event: change\ndata: {json.dumps({'changed': changed, 'version': now_v})}\n\n"
                    last = now_v
                beat += 1
                if beat % 15 == 0:
                    yield ": keep-alive\n\n"
                await asyncio.sleep(sse_interval)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # -- dashboard

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    if STATIC.exists():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
