"""What every route shares, as FastAPI dependencies: the app's context (the
store, the district's calendar, the rules), the caller, and the caller's area.

Two clocks: `clock` is the district's calendar (virtual in a simulation),
`session_clock` times logins, which belong to the person at the screen. Every
query is limited to the caller's part of the grid (`users.Scope`); asking for
something outside it by id is answered 404, by filter 403, so the API never
confirms what exists elsewhere."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from gateway.supervision import cases

from gateway import store
from gateway.store import users
from gateway.api import queries, words
from protocols import policy
from gateway.api.db import Db
from gateway.api.errors import ApiError
from gateway.api.throttle import Hashing, LoginThrottle
from gateway.supervision.rules import local_parts
from gateway.store.users import User

log = logging.getLogger(__name__)

COOKIE = "agri_token"
MAX_ID = 2 ** 62


@dataclass
class Context:
    db: Db
    clock: Callable[[], int]
    session_clock: Callable[[], int]
    cfg: dict
    policy_params: dict
    photos: Path
    throttle: LoginThrottle
    token_ttl_ms: int
    sse_interval: float
    hashing: Hashing = field(default_factory=Hashing)
    map_tiles: str | None = None   # the deployment's own tile server's URL template ({z} {x} {y}); off by default
    stopping: bool = False  # set at shutdown: open event streams end so the server can stop
    # (catalogue version, its products): parsed again only when an import changes the version
    _products: tuple = (object(), {})
    # ((registry revision, periods), {(town, category): allowance}): the registry is read again only when it changes
    _allowances: tuple = (object(), None)
    _allowances_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def tz(self) -> int:
        return self.cfg["grid"]["tz_minutes"]

    def today(self) -> str:
        return local_parts(self.clock(), self.tz)[0]

    def town_allowances(self, conn, periods: dict) -> dict:
        """{(town, category): the sum of the town's registered allowances} for
        `periods` ({category: period}). Summing a province's registry takes
        seconds (10 s for a million subjects), so it is done once per registry
        revision and period: after an import the previous sums are answered
        while the new ones are made in the background; only the very first
        request waits for them."""
        key = (queries.subjects_rev(conn), tuple(sorted(periods.items())))
        done_key, totals = self._allowances
        if done_key == key:
            return totals
        if totals is None:
            with self._allowances_lock:
                if self._allowances[0] != key:
                    self._allowances = (key, self._sum_allowances(conn, periods))
                return self._allowances[1]
        if self._allowances_lock.acquire(blocking=False):
            self._refresh_in_background(periods)
        return totals

    def quota_periods(self) -> dict:
        """{category: its current period} on the district's today."""
        today = self.today()
        return {cat: policy.period_of(self.policy_params, cat, today)
                for cat in sorted(self.policy_params.get("categories", {}))}

    def prewarm_allowances(self) -> None:
        """At start: the sums are made before the first overview asks for them."""
        self._allowances_lock.acquire()
        self._refresh_in_background(self.quota_periods())

    def _refresh_in_background(self, periods: dict) -> None:
        threading.Thread(target=self._refresh_allowances, args=(periods,), name="allowances", daemon=True).start()

    def _refresh_allowances(self, periods: dict) -> None:
        """With a connection of its own; the caller took the lock, this releases it."""
        try:
            conn = store.connect(self.db.path)
            try:
                key = (queries.subjects_rev(conn), tuple(sorted(periods.items())))
                self._allowances = (key, self._sum_allowances(conn, periods))
            finally:
                conn.close()
        except Exception:     # the previous sums stay; the next request tries again
            log.exception("quota chart: summing the registry's allowances failed")
        finally:
            self._allowances_lock.release()

    def _sum_allowances(self, conn, periods: dict) -> dict:
        totals: dict = {}
        for town, data in queries.registry_entries(conn):
            try:
                entry = json.loads(data)
            except ValueError:
                continue
            if not town or not isinstance(entry, dict):
                continue
            for cat, period in periods.items():
                allowance = policy.allowance(entry, self.policy_params, cat, period)
                totals[(town, cat)] = totals.get((town, cat), 0) + allowance
        return totals

    def products(self, conn) -> dict:
        version = queries.catalogue_version(conn)
        if self._products[0] != version:
            self._products = (version, queries.catalogue(conn)[1].get("products") or {})
        return self._products[1]

    def names(self, conn, subjects=()) -> words.Names:
        """Names for the ids a page shows: products by catalogue name, shops by
        name, subjects by masked name, times in the district's zone."""
        products, shops = self.products(conn), queries.shop_names(conn)
        people = queries.subject_names(conn, subjects)
        return words.Names(product=lambda reg: (products.get(reg) or {}).get("name") or reg,
                           shop=lambda shop: shops.get(shop) or shop,
                           subject=lambda sid: people.get(sid) or sid, tz_minutes=self.tz)

    def name_items(self, conn, rows: list[dict]) -> list[dict]:
        """Each sold item with its product's name (the registration number stays in `product`)."""
        products = self.products(conn)
        for row in rows:
            for item in row["items"]:
                product = item["product"]
                item["name"] = (products.get(product) or {}).get("name") if isinstance(product, str) else None
        return rows


def context(request: Request) -> Context:
    return request.app.state.ctx


bearer = HTTPBearer(auto_error=False)


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


def authenticate(request: Request, token: str | None) -> User:
    """The cookie counts for GETs only: a write needs the bearer header, so
    another site cannot make a logged-in browser change a case."""
    if token is None and request.method == "GET":
        token = request.cookies.get(COOKIE)
    if token is None and request.method != "GET" and request.cookies.get(COOKIE):
        raise ApiError(403, "csrf_header_required")
    ctx = context(request)
    user = users.by_token(ctx.db.conn(), token or "", ctx.session_clock())
    if user is None:
        raise ApiError(401, "unauthenticated")
    request.state.token = token
    return user


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


@dataclass(frozen=True)
class Page:
    """Which page of a list: numbered pages, because a queue sorted by
    severity has no id order to continue from."""
    page: int
    per_page: int


def paging(page: int = Query(1, ge=1, le=10_000), per_page: int = Query(20, ge=1, le=100)) -> Page:
    return Page(page, per_page)


def visible_town(ctx: Context, user: User, town: str | None) -> None:
    """A filter naming an area outside the caller's is refused (403), not
    answered with an empty list that would look like "nothing there"."""
    if town and not queries.area_visible(ctx.db.conn(), user, town):
        raise ApiError(403, "forbidden_area", town)


def shop_or_404(ctx: Context, user: User, shop_id: str) -> dict:
    row = queries.shop(ctx.db.conn(), shop_id)
    if row is None or not user.scope().covers(row):
        raise ApiError(404, "not_found", shop_id)
    return row


def terminal_or_404(ctx: Context, user: User, terminal: str) -> dict:
    row = queries.terminal(ctx.db.conn(), terminal)
    if row is None or not user.scope().covers(row):
        raise ApiError(404, "not_found", terminal)
    return row


def case_or_404(ctx: Context, user: User, case_id: int) -> dict:
    case = cases.get(ctx.db.conn(), case_id)
    if case is None or not user.scope().covers(case):
        raise ApiError(404, "not_found", str(case_id))
    return case
