"""Login, logout, the caller, and the code texts the dashboard shows.

Logins are throttled per client address and per (address, name), never per
account alone (gateway/api/throttle.py), and the password is hashed outside
any transaction."""

from __future__ import annotations

import asyncio
import math

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from gateway.store import users
from gateway.api import queries
from gateway.api.deps import COOKIE, Context, bearer, context, current_user
from gateway.api.errors import ApiError
from gateway.api.models import Login
from gateway.api.throttle import Busy, client_key
from gateway.store.users import User
from protocols import reasons

router = APIRouter()


@router.post("/api/login", tags=["auth"])
async def login(body: Login, request: Request, response: Response, ctx: Context = Depends(context)) -> dict:
    """A bearer token (and the same as an HttpOnly cookie for the dashboard's
    GETs, `Secure` over HTTPS)."""
    address = client_key(request.client.host if request.client else None)
    wait = ctx.throttle.check(address, body.name)
    if wait > 0:
        await asyncio.sleep(min(wait, ctx.throttle.limits.tarpit_s))
        raise ApiError(429, "too_many_attempts", headers={"Retry-After": str(max(1, math.ceil(wait)))})
    stored = await run_in_threadpool(lambda: users.stored_credentials(ctx.db.conn(), body.name))
    try:
        ok = await ctx.hashing.run(lambda: users.verify(body.password, stored))
    except Busy:
        raise ApiError(429, "too_many_attempts", "busy", headers={"Retry-After": "1"}) from None
    result = None
    if ok:
        result = await run_in_threadpool(
            lambda: users.issue_token(ctx.db.conn(), stored, ctx.session_clock(), ctx.token_ttl_ms))
    if result is None:
        ctx.throttle.failed(address, body.name)
        raise ApiError(401, "login_failed")
    ctx.throttle.succeeded(address, body.name)
    token, user = result
    response.set_cookie(COOKIE, token, max_age=ctx.token_ttl_ms // 1000, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return {"token": token, "expires": ctx.session_clock() + ctx.token_ttl_ms,
            "user": {"name": user.name, "role": user.role, "area": user.area,
                     "area_name": await run_in_threadpool(queries.area_name, ctx.db.conn(), user.area)}}


@router.post("/api/logout", tags=["auth"])
def logout(request: Request, response: Response, user: User = Depends(current_user),
           creds: HTTPAuthorizationCredentials | None = Depends(bearer), ctx: Context = Depends(context)) -> dict:
    with ctx.db.write() as conn:
        users.logout(conn, creds.credentials)
    response.delete_cookie(COOKIE, httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return {"ok": True}


@router.get("/api/me", tags=["auth"])
def me(user: User = Depends(current_user), ctx: Context = Depends(context)) -> dict:
    """The caller, with the name colleagues know them by, and the district's
    time zone: the dashboard shows local time whatever the browser's zone."""
    conn = ctx.db.conn()
    return {"name": user.name, "display_name": queries.user_names(conn).get(user.name, user.name), "role": user.role,
            "area": user.area, "area_name": queries.area_name(conn, user.area), "tz_minutes": ctx.tz}


@router.get("/api/codes", tags=["reference"])
def codes(user: User = Depends(current_user)) -> dict:
    """Texts of every reason code in Chinese and English, for the dashboard."""
    return {code: {"zh": reasons.text(code, "zh"), "en": reasons.text(code, "en")} for code in reasons.codes()}
