"""The clerk's kiosk UI: a FastAPI app over the counter session
(`firmware.kiosk.Kiosk`, the agent's public service API), served on localhost
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
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from firmware.kiosk import ClerkLocked, Kiosk
from firmware.receipt import time_text
from protocols.reasons import ReasonError

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


class Toggle(BaseModel):
    on: bool


class VoidBody(BaseModel):
    reason: str = Field("clerk_void", pattern=r"^[a-z_]{1,40}$")


class FaceBody(BaseModel):
    product_class: str = Field("normal", pattern=r"^(normal|restricted)$")  # restricted: with liveness


def create_app(kiosk: Kiosk) -> FastAPI:
    app = FastAPI(title="agri-quota terminal", docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(ReasonError)
    async def _reason(request: Request, exc: ReasonError):
        if isinstance(exc, ClerkLocked):        # sign-in locked after wrong PINs: say for how long
            return JSONResponse(Kiosk.error_view(exc), status_code=429,
                                headers={"Retry-After": str(exc.retry_after)})
        return JSONResponse(Kiosk.error_view(exc), status_code=409)

    @app.get("/")
    def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/state")
    def state() -> dict:
        return kiosk.snapshot()

    @app.get("/api/events")
    async def events(request: Request):
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue(maxsize=64)

        def push(snapshot: dict) -> None:
            def put():
                if inbox.full():            # a stalled page gets the newest state, not a backlog
                    inbox.get_nowait()
                inbox.put_nowait(snapshot)
            loop.call_soon_threadsafe(put)

        kiosk.add_listener(push)

        async def stream():
            try:
                yield "retry: 1000\n\n"
                yield "data: %s\n\n" % json.dumps(kiosk.snapshot(), ensure_ascii=False)
                while True:
                    try:
                        snap = await asyncio.wait_for(inbox.get(), KEEPALIVE_S)
                    except asyncio.TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    yield "data: %s\n\n" % json.dumps(snap, ensure_ascii=False)
            finally:
                kiosk.remove_listener(push)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.post("/api/signin")
    def signin(body: Pin) -> dict:
        clerk = kiosk.sign_in(body.pin)
        return {"clerk": clerk.id, "name": clerk.name}

    @app.post("/api/signout")
    def signout() -> dict:
        kiosk.sign_out()
        return {"ok": True}

    @app.post("/api/scan")
    def scan(body: Scan) -> dict:
        return kiosk.scan(body.text, body.packs)

    @app.post("/api/cart")
    def add(body: Add) -> dict:
        kiosk.add(body.product, body.spec, body.packs)
        return {"ok": True}

    @app.put("/api/cart/{index}")
    def set_packs(index: int, body: Packs) -> dict:
        kiosk.set_packs(index, body.packs)
        return {"ok": True}

    @app.delete("/api/cart/{index}")
    def remove(index: int) -> dict:
        kiosk.remove(index)
        return {"ok": True}

    @app.get("/api/catalogue")
    def catalogue(q: str = "", limit: int = 20) -> dict:
        return {"products": kiosk.search(q[:64], max(1, min(limit, 100)))}

    @app.post("/api/checkout")
    def checkout() -> dict:
        return kiosk.checkout()

    @app.post("/api/void")
    def void(body: VoidBody) -> dict:
        return kiosk.void(body.reason)

    @app.post("/api/finish")
    def finish() -> dict:
        kiosk.finish()
        return {"ok": True}

    @app.post("/api/face")
    def face(body: FaceBody) -> dict:
        """Identify the buyer at the camera against the synced face gallery: the
        outcome (identified, or the face reason in words) for the page to show."""
        return kiosk.face_check(body.product_class)

    @app.post("/api/reprint")
    def reprint() -> dict:
        kiosk.reprint()
        return {"ok": True}

    @app.post("/api/return/start")
    def return_start() -> dict:
        kiosk.start_return()
        return {"ok": True}

    @app.post("/api/return/scan")
    def return_scan(body: Scan) -> dict:
        return kiosk.scan_return(body.text)

    @app.post("/api/return/cancel")
    def return_cancel() -> dict:
        kiosk.cancel_return()
        return {"ok": True}

    @app.post("/api/return/commit")
    def return_commit() -> dict:
        return kiosk.commit_return()

    @app.get("/api/ledger")
    def ledger(before: int | None = None, limit: int = 50) -> dict:
        return kiosk.ledger_rows(before, max(1, min(limit, 200)))

    @app.get("/api/ledger.csv")
    def ledger_csv():
        name = "ledger-%s.csv" % kiosk.config.terminal
        return StreamingResponse(kiosk.ledger_csv(), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": 'attachment; filename="%s"' % name})

    @app.get("/api/ledger.pdf")
    def ledger_pdf():
        # Built whole before the answer (a plain def, so in the thread pool): a
        # failure such as a missing font is then a 409 with its reason, not a
        # truncated file. The PDF's xref table needs the whole document anyway.
        data = kiosk.ledger_pdf()
        name = "ledger-%s-%s.pdf" % (kiosk.config.terminal, time_text(kiosk.wall_ms())[:10].replace("-", ""))
        return Response(data, media_type="application/pdf",
                        headers={"Content-Disposition": 'attachment; filename="%s"' % name,
                                 "Cache-Control": "no-store"})

    @app.post("/api/voice")
    def voice(body: Toggle) -> dict:
        kiosk.set_voice(body.on)
        return {"voice": body.on}

    return app
