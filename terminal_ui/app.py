"""The clerk's kiosk UI: a FastAPI app over the counter session
(`terminal_ui.kiosk.Kiosk`, around the agent's public service API), served on localhost
and shown in Chromium kiosk mode.

Live updates are server-sent events: every change of the session (a card
tapped on the reader thread, a decision committed, the network dropping) is
pushed as the full screen state, so the page needs no polling and a reconnect
(Chromium restarted, agent restarted) simply starts from the current state. SSE
rather than WebSocket because the traffic is one-way and plain HTTP, so
EventSource reconnects by itself.

Every asset is served from `static/` (no fonts, scripts or styles from the
internet: a shop's network may be down or filtered, and the kiosk must still
work). Errors come back as `{"code", "zh", "en"}` from protocols.reasons, the
same codes the ledger and the gateway use.

Who may call what: `terminal_ui/security.py` checks Host, Origin, the session
cookie and the CSRF token before any handler runs; a handler passes its
session's id to the kiosk (`session=`), which lets only the session the clerk
signed in on see the counter and act (`Kiosk.holds`); every other client gets
the public sign-in state (`Kiosk.public_snapshot`) and 401 `clerk_required`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from firmware.prices import PriceError
from firmware.receipt import time_text
from protocols.reasons import ReasonError
from terminal_ui.kiosk import Kiosk
from terminal_ui.errors import ClerkLocked, KioskError
from terminal_ui.security import Guard, allowed_hosts
from terminal_ui.sessions import COOKIE, Session, Sessions

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
KEEPALIVE_S = 15.0


class Pin(BaseModel):
    pin: str = Field(min_length=1, max_length=12)


class Scan(BaseModel):
    text: str = Field(min_length=1, max_length=2000)
    packs: int = Field(1, ge=1, le=100000)


class Add(BaseModel):
    product: str = Field(min_length=1, max_length=64)
    spec: str = Field(min_length=1, max_length=16)
    packs: int = Field(1, ge=1, le=100000)


class Packs(BaseModel):
    packs: int = Field(ge=1, le=100000)


class PriceBody(BaseModel):
    product: str = Field(min_length=1, max_length=64)
    spec: str = Field(min_length=1, max_length=16)
    yuan: str | None = Field(None, max_length=16)     # None: remove the price


class DepositBody(BaseModel):
    yuan: str = Field(max_length=16)


class Toggle(BaseModel):
    on: bool


class VoidBody(BaseModel):
    reason: str = Field("clerk_void", pattern=r"^[a-z_]{1,40}$")


class FaceBody(BaseModel):
    product_class: str = Field("normal", pattern=r"^(normal|restricted)$")  # restricted: with liveness


def create_app(kiosk: Kiosk, host: str | None = None, port: int | None = None) -> FastAPI:
    """The app for the kiosk served on `host:port` (default: `[kiosk] http`);
    only requests naming that address as their Host are answered."""
    conf_host, _, conf_port = kiosk.settings.http.rpartition(":")
    host = host or conf_host or "127.0.0.1"
    port = port if port is not None else int(conf_port)
    app = FastAPI(title="agri-quota terminal", docs_url=None, redoc_url=None, openapi_url=None)
    sessions = Sessions(holds=kiosk.holds, on_end=kiosk.end_session)
    app.state.sessions = sessions
    app.add_middleware(Guard, hosts=allowed_hosts(host, port), sessions=sessions)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(ReasonError)
    async def _reason(request: Request, exc: ReasonError):
        if isinstance(exc, ClerkLocked):        # sign-in locked after wrong PINs: say for how long
            return JSONResponse(Kiosk.error_view(exc), status_code=429,
                                headers={"Retry-After": str(exc.retry_after)})
        status = {"clerk_required": 401, "owner_required": 403}.get(exc.code, 422 if isinstance(exc, PriceError) else 409)
        return JSONResponse(Kiosk.error_view(exc), status_code=status)

    def client(request: Request) -> Session:
        """The caller's session (security.Guard let no /api/ call without one
        through, but GET /api/session and /api/state)."""
        session = request.state.session
        if session is None:
            raise KioskError("clerk_required")
        return session

    def sid(session: Session = Depends(client)) -> str:
        return session.id

    def clerk(session_id: str = Depends(sid)) -> str:
        """A session whose clerk signed in on it: the ledger and the catalogue."""
        kiosk.need_clerk(session_id)
        return session_id

    def set_cookie(response: Response, cookie: str) -> None:
        # No Max-Age: it ends with the browser. No Secure: plain HTTP on loopback.
        response.set_cookie(COOKIE, cookie, httponly=True, samesite="strict", path="/")

    @app.get("/")
    def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/session")
    def session(request: Request, response: Response) -> dict:
        """The page's first call: its session (a new one, with its cookie, if
        it had none or an ended one) and the CSRF token for its changes."""
        current = request.state.session
        if current is None:
            cookie, current = sessions.make()
            sessions.add(cookie, current)
            set_cookie(response, cookie)
        return {"csrf": current.csrf, "signed_in": kiosk.holds(current.id)}

    @app.get("/api/state")
    def state(request: Request) -> dict:
        """The counter for the signed-in session; for anyone else the public
        sign-in state (screen, online, versions, device faults, voice)."""
        current = request.state.session
        return kiosk.view_for(current.id) if current else kiosk.public_snapshot()

    @app.get("/api/events")
    async def events(request: Request, session_id: str = Depends(sid)):
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue(maxsize=64)

        def push(snapshot: dict) -> None:
            def put():
                if inbox.full():            # a stalled page gets the newest state, not a backlog
                    inbox.get_nowait()
                inbox.put_nowait(snapshot)
            loop.call_soon_threadsafe(put)

        kiosk.add_listener(push, session=session_id)

        async def stream():
            try:
                yield "retry: 1000\n\n"
                yield "data: %s\n\n" % json.dumps(kiosk.view_for(session_id), ensure_ascii=False)
                while True:
                    try:
                        snap = await asyncio.wait_for(inbox.get(), KEEPALIVE_S)
                    except asyncio.TimeoutError:
                        snap = None
                    if not sessions.alive(session_id):
                        # ended (a sign-in made a new one, expired): the page fetches another
                        yield "event: end\ndata: {}\n\n"
                        return
                    sessions.touch(session_id)      # an open page keeps its session in use
                    if snap is None:
                        yield ": keepalive\n\n"
                        continue
                    yield "data: %s\n\n" % json.dumps(snap, ensure_ascii=False)
            finally:
                kiosk.remove_listener(push)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.post("/api/signin")
    def signin(body: Pin, request: Request, response: Response, current: Session = Depends(client)) -> dict:
        """A new session for the signed-in clerk (new cookie and CSRF token,
        the old ones dropped): a session planted in the browser before the
        sign-in (cookies ignore ports) never becomes the clerk's."""
        cookie, fresh = sessions.make()
        signed = kiosk.sign_in(body.pin, session=fresh.id)
        sessions.add(cookie, fresh, replacing=request.state.cookie)
        set_cookie(response, cookie)
        return {"clerk": signed.id, "name": signed.name, "csrf": fresh.csrf}

    @app.post("/api/signout")
    def signout(session_id: str = Depends(sid)) -> dict:
        kiosk.sign_out(session=session_id)
        return {"ok": True}

    @app.post("/api/scan")
    def scan(body: Scan, session_id: str = Depends(sid)) -> dict:
        return kiosk.scan(body.text, body.packs, session=session_id)

    @app.post("/api/cart")
    def add(body: Add, session_id: str = Depends(sid)) -> dict:
        kiosk.add(body.product, body.spec, body.packs, session=session_id)
        return {"ok": True}

    @app.put("/api/cart/{index}")
    def set_packs(index: int, body: Packs, session_id: str = Depends(sid)) -> dict:
        kiosk.set_packs(index, body.packs, session=session_id)
        return {"ok": True}

    @app.delete("/api/cart/{index}")
    def remove(index: int, session_id: str = Depends(sid)) -> dict:
        kiosk.remove(index, session=session_id)
        return {"ok": True}

    @app.get("/api/catalogue")
    def catalogue(q: str = "", limit: int = 20, session_id: str = Depends(clerk)) -> dict:
        return {"products": kiosk.search(q[:64], max(1, min(limit, 100)))}

    @app.post("/api/checkout")
    def checkout(session_id: str = Depends(sid)) -> dict:
        return kiosk.checkout(session=session_id)

    @app.post("/api/void")
    def void(body: VoidBody, session_id: str = Depends(sid)) -> dict:
        return kiosk.void(body.reason, session=session_id)

    @app.post("/api/finish")
    def finish(session_id: str = Depends(sid)) -> dict:
        kiosk.finish(session=session_id)
        return {"ok": True}

    @app.post("/api/buyer/keep-cart")
    def keep_cart_for_new_buyer(session_id: str = Depends(sid)) -> dict:
        kiosk.keep_cart_for_new_buyer(session=session_id)
        return {"ok": True}

    @app.post("/api/buyer/current-first")
    def serve_current_buyer_first(session_id: str = Depends(sid)) -> dict:
        kiosk.serve_current_buyer_first(session=session_id)
        return {"ok": True}

    @app.post("/api/continue")
    def continue_same_buyer(session_id: str = Depends(sid)) -> dict:
        kiosk.continue_same_buyer(session=session_id)
        return {"ok": True}

    @app.post("/api/allowed/{index}")
    def change_to_allowed(index: int, session_id: str = Depends(sid)) -> dict:
        kiosk.change_to_allowed(index, session=session_id)
        return {"ok": True}

    @app.post("/api/face")
    def face(body: FaceBody, session_id: str = Depends(sid)) -> dict:
        """Identify the buyer at the camera against the synced face gallery: the
        outcome (identified, or the face reason in words) for the page to show."""
        return kiosk.face_check(body.product_class, session=session_id)

    @app.post("/api/reprint")
    def reprint(session_id: str = Depends(sid)) -> dict:
        kiosk.reprint(session=session_id)
        return {"ok": True}

    @app.post("/api/return/start")
    def return_start(session_id: str = Depends(sid)) -> dict:
        kiosk.start_return(session=session_id)
        return {"ok": True}

    @app.post("/api/return/scan")
    def return_scan(body: Scan, session_id: str = Depends(sid)) -> dict:
        return kiosk.scan_return(body.text, session=session_id)

    @app.post("/api/return/cancel")
    def return_cancel(session_id: str = Depends(sid)) -> dict:
        kiosk.cancel_return(session=session_id)
        return {"ok": True}

    @app.post("/api/return/commit")
    def return_commit(session_id: str = Depends(sid)) -> dict:
        return kiosk.commit_return(session=session_id)

    @app.get("/api/ledger")
    def ledger(before: int | None = None, limit: int = 50, session_id: str = Depends(clerk)) -> dict:
        return kiosk.ledger_rows(before, max(1, min(limit, 200)))

    @app.get("/api/ledger.csv")
    def ledger_csv(session_id: str = Depends(clerk)):
        name = "ledger-%s.csv" % kiosk.config.terminal
        return StreamingResponse(kiosk.ledger_csv(), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": 'attachment; filename="%s"' % name})

    @app.get("/api/ledger.pdf")
    def ledger_pdf(session_id: str = Depends(clerk)):
        # Built whole before the answer (a plain def, so in the thread pool): a
        # failure such as a missing font is then a 409 with its reason, not a
        # truncated file. The PDF's xref table needs the whole document anyway.
        data = kiosk.ledger_pdf()
        name = "ledger-%s-%s.pdf" % (kiosk.config.terminal, time_text(kiosk.wall_ms())[:10].replace("-", ""))
        return Response(data, media_type="application/pdf",
                        headers={"Content-Disposition": 'attachment; filename="%s"' % name,
                                 "Cache-Control": "no-store"})

    @app.get("/api/prices")
    def prices(q: str = "", session_id: str = Depends(clerk)) -> dict:
        return kiosk.price_list(q[:64])

    @app.put("/api/prices")
    def set_price(body: PriceBody, session_id: str = Depends(sid)) -> dict:
        return {"ok": True, "fen": kiosk.set_price(body.product, body.spec, body.yuan, session=session_id)}

    @app.put("/api/prices/deposit")
    def set_deposit(body: DepositBody, session_id: str = Depends(sid)) -> dict:
        return {"ok": True, "fen": kiosk.set_deposit(body.yuan, session=session_id)}

    @app.post("/api/voice")
    def voice(body: Toggle, session_id: str = Depends(sid)) -> dict:
        kiosk.set_voice(body.on, session=session_id)
        return {"voice": body.on}

    return app
