"""The dashboard's live updates: server-sent events naming what changed."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from gateway.store import users
from gateway.api import queries
from gateway.api.deps import Context, context, current_user
from gateway.store.users import User

router = APIRouter()


@router.get("/api/events", include_in_schema=False)
async def events(request: Request, user: User = Depends(current_user), ctx: Context = Depends(context)):
    """One `change` event naming what changed in the caller's area (cases,
    violations, fleet, sales; upstream for district users) whenever it does;
    the page refetches. The token is checked again on every tick: a stream
    ends (`end` event) as soon as its session does (logout, expiry, password
    reset, disabled user)."""
    token = request.state.token

    def still_valid() -> bool:
        return users.by_token(ctx.db.conn(), token, ctx.session_clock()) is not None

    def version() -> dict:
        return queries.version(ctx.db.conn(), user, ctx.today(), ctx.cfg["queue"]["watch"])

    async def stream():
        last = None
        beat = 0
        while not ctx.stopping:
            if await request.is_disconnected():
                break
            if not await run_in_threadpool(still_valid):
                yield 'event: end\ndata: {"code": "unauthenticated"}\n\n'
                break
            now_v = await run_in_threadpool(version)
            if now_v != last:
                changed = [k for k in now_v if last is None or now_v[k] != last[k]]
                yield f"event: change\ndata: {json.dumps({'changed': changed, 'version': now_v})}\n\n"
                last = now_v
            beat += 1
            if beat % 15 == 0:
                yield ": keep-alive\n\n"
            await asyncio.sleep(ctx.sse_interval)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
