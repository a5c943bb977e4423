"""The supervision API: subjects and their quota use, shops and their ledgers,
terminals and their health, violations, cases and their transitions,
statistics; and the dashboard's static files and live event stream.

`create_app` only assembles: the context every route reads (`deps.Context`
on `app.state.ctx`), the middleware, the error shape (`errors.install`) and
one router per concern (gateway/api/routers/). Every endpoint but login needs
a token; every query is limited to the caller's part of the grid. Writes need
the bearer header (the cookie is accepted for GETs and the event stream only),
so another site cannot make a logged-in browser change a case. The security
controls, where each is tested, and deployment over HTTPS and behind a proxy:
docs/security.md.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path as FsPath
from typing import Callable

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from gateway import store

from gateway.store import users
from gateway.api import errors, serve
from gateway.api.db import Db
from gateway.api.deps import Context, anonymous, strict_query
from gateway.api.routers import auth, cases, desk, district, live, overview, shops, subjects
from gateway.api.security import LimitBody, SecurityHeaders
from gateway.api.throttle import LoginThrottle
from gateway.supervision.rules import config as rules_config
from gateway.supervision.rules import engine
from protocols.clock import real_ms, wall_ms as now_ms

STATIC = FsPath(__file__).resolve().parent.parent / "dashboard" / "static"


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
               login_throttle: LoginThrottle | None = None, trusted_proxies=(),
               map_tiles: str | None = None) -> FastAPI:
    """`clock` is the district's calendar (virtual in a simulation);
    `session_clock` times logins, which belong to the person at the screen.
    `trusted_proxies`: addresses or networks of reverse proxies whose
    X-Forwarded-For and X-Forwarded-Proto count (gateway/api/serve.py);
    from anyone else the headers are ignored. `map_tiles`: a tile URL
    template (https://host/{z}/{x}/{y}.png) for deployments with a tile server
    of their own (or `[map] tiles` in the rules file); without one (the default) the map is drawn from the grid's
    coordinates alone."""
    rules_cfg = rules_cfg or rules_config.load()
    map_tiles = map_tiles or rules_cfg.get("map", {}).get("tiles") or None
    tile_origin = serve.check_tiles(map_tiles)
    ctx = Context(db=Db(db_path), clock=clock, session_clock=session_clock, cfg=rules_cfg,
                  policy_params=params or engine.load_params(),
                  photos=FsPath(photos_dir or default_photos_dir(db_path)),
                  throttle=login_throttle or LoginThrottle(), token_ttl_ms=token_ttl_ms, sse_interval=sse_interval,
                  map_tiles=map_tiles)
    ctx.db.conn()  # opened (and migrated) before the first request

    @asynccontextmanager
    async def lifespan(app):
        ctx.prewarm_allowances()   # a large registry's quota sums take seconds: made before they are asked for
        yield
        ctx.stopping = True

    app = FastAPI(title="agri-quota supervision API", version="1", lifespan=lifespan,
                  responses=errors.ERROR_RESPONSES, dependencies=[Depends(strict_query)],
                  description="District supervision of real-name, quota-limited agri-input sales. "
                              "Bearer token from POST /api/login.")
    app.state.ctx = ctx
    app.add_middleware(LimitBody)
    app.add_middleware(SecurityHeaders, img_origin=tile_origin)
    # outermost: the client address and scheme are settled before anything reads them
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(trusted_proxies))
    errors.install(app, anonymous)
    for module in (auth, overview, cases, subjects, shops, desk, district, live):
        app.include_router(module.router)

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    if STATIC.exists():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
