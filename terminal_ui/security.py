"""Who may talk to the kiosk UI, checked before any handler runs.

The kiosk serves on a loopback address only, but "only this machine" is not
"only the clerk's page": any web page the kiosk's Chromium (or another browser
on the Pi) opens can send requests to 127.0.0.1, and any process on the Pi can.
So every request passes, in this order (the first failure answers, nothing
else runs):

1. **Host** must be one of the kiosk's own addresses (`127.0.0.1:PORT`,
   `localhost:PORT`, the configured host): 421 `host_not_allowed`. A page that
   reaches the kiosk through a name of its own (DNS rebinding) sends its own
   name.
2. **Origin**, when sent, must be `http://` + one of those: 403
   `origin_not_allowed` (a page on another site or another port, `null` from
   a sandboxed frame or a file). A change (any method but GET and HEAD) with
   no Origin at all is refused too (403 `origin_required`): browsers label
   every POST, PUT and DELETE they send, same-origin ones included, so only a
   non-browser client lacks it, and that one must say where it comes from
   like the page does.
3. **Sec-Fetch-Site**, when sent (Chromium sends it to 127.0.0.1), must be
   `same-origin` or `none` (typed or launched) for `/api/`: 403
   `cross_site_request`. It catches what carries no Origin: an `<img>`, a
   `<script>` or a link of another page (another port of 127.0.0.1 is
   "same-site", so SameSite cookies alone would not).
4. **Session**: `/api/` needs the session cookie (`terminal_ui/sessions.py`),
   except `GET /api/session` (which issues it) and `GET /api/state` (the
   public sign-in state without one): 401 `session_required`.
5. **CSRF token**: a change needs the session's token in `X-CSRF-Token`
   (403 `csrf_token_invalid`). A form or a `text/plain` POST cannot carry a
   header; a fetch that sets one from another origin is preflighted and
   refused at 2.
6. **Body**: a change with a body must be `application/json` (415
   `content_type_json`), declare its length (411), and be at most 16 KiB (413).

Every answer carries a Content-Security-Policy (everything from the kiosk
itself, no framing), `X-Frame-Options: DENY`, `nosniff`, `no-referrer`,
`Cross-Origin-Resource-Policy: same-origin`, and `Cache-Control: no-store`
under `/api/`. Refusals are logged (`kiosk request refused reason=...`).
"""

from __future__ import annotations

import ipaddress
import json
import logging

from protocols import reasons
from terminal_ui.sessions import COOKIE, Sessions

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024
SAFE = ("GET", "HEAD")
OPEN = {("GET", "/api/session"), ("GET", "/api/state")}     # answered without a session cookie
FETCH_SITES = {"same-origin", "none"}

reasons.register({
    "host_not_allowed": ("请求的地址不是本机收银界面", "Host is not this kiosk's address"),
    "origin_not_allowed": ("请求来自其他网页，已拒绝", "Request from another origin: refused"),
    "origin_required": ("请求缺少来源（Origin），已拒绝", "A change needs an Origin header"),
    "cross_site_request": ("请求来自其他网页，已拒绝", "Cross-site request: refused"),
    "session_required": ("会话已失效，请刷新页面", "No session: reload the page"),
    "csrf_token_invalid": ("会话校验失败，请刷新页面", "Missing or wrong CSRF token: reload the page"),
    "content_type_json": ("请求格式须为 JSON", "The body must be application/json"),
    "body_length_required": ("请求须注明长度", "The body needs a Content-Length"),
    "body_too_large": ("请求内容过大", "Request body too large"),
})

CSP = ("default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-frame-options", b"DENY"),
           (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
           (b"cross-origin-resource-policy", b"same-origin"), (b"cross-origin-opener-policy", b"same-origin")]


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The Host values of the kiosk bound to `host:port` (a loopback address)."""
    names = {"127.0.0.1", "localhost"}
    host = host.strip("[]").lower()
    try:
        ip = ipaddress.ip_address(host)
        names.add("[%s]" % ip.compressed if ip.version == 6 else ip.compressed)
    except ValueError:
        names.add(host)
    hosts = {"%s:%d" % (name, port) for name in names}
    if port == 80:                  # browsers leave the default port out
        hosts |= names
    return frozenset(hosts)


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cookie_value(header: str | None, name: str = COOKIE) -> str | None:
    """The value of cookie `name`; None when absent or when sent more than once
    (a second one set by another port's page must not be picked by order)."""
    if not header:
        return None
    found = [part.split("=", 1)[1].strip() for part in header.split(";")
             if "=" in part and part.split("=", 1)[0].strip() == name]
    return found[0] if len(found) == 1 else None


class Guard:
    """ASGI middleware: the checks above, then the app with
    `scope["state"]["session"]` (a `Session` or None) and `["cookie"]`."""

    def __init__(self, app, hosts: frozenset[str], sessions: Sessions):
        self.app = app
        self.hosts = hosts
        self.origins = frozenset("http://" + h for h in hosts)
        self.sessions = sessions

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        api = scope["path"].startswith("/api/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in HEADERS if k not in names]
                if api and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = dict(message, headers=headers)
            await send(message)

        refusal = self._check(scope)
        if refusal is not None:
            status, code, extra = refusal
            log.warning("kiosk request refused reason=%s method=%s path=%s host=%s origin=%s", code,
                        scope["method"], scope["path"], self._header(scope, b"host"), self._header(scope, b"origin"))
            body = json.dumps({"code": code, "zh": reasons.text(code, "zh"), "en": reasons.text(code, "en"),
                               "action": None}, ensure_ascii=False).encode("utf-8")
            await send_with_headers({"type": "http.response.start", "status": status,
                                     "headers": [(b"content-type", b"application/json"),
                                                 (b"content-length", str(len(body)).encode())] + extra})
            await send_with_headers({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_with_headers)

    @staticmethod
    def _header(scope, name: bytes) -> str | None:
        values = [v for k, v in scope["headers"] if k == name]
        if len(values) != 1:
            return None if not values else "\x00multiple"
        return values[0].decode("latin-1")

    def _check(self, scope):
        header = lambda name: self._header(scope, name)     # noqa: E731
        method, path = scope["method"], scope["path"]
        host = header(b"host")
        if host is None or host.lower() not in self.hosts:
            return 421, "host_not_allowed", []
        origin = header(b"origin")
        if origin is not None and origin.lower() not in self.origins:
            return 403, "origin_not_allowed", []
        changes = method not in SAFE
        if changes and origin is None:
            return 403, "origin_required", []
        site = header(b"sec-fetch-site")
        if path.startswith("/api/") and site is not None and site.lower() not in FETCH_SITES:
            return 403, "cross_site_request", []
        state = scope.setdefault("state", {})
        state["session"] = state["cookie"] = None
        if not path.startswith("/api/"):
            return None
        cookie = cookie_value(header(b"cookie"))
        session = self.sessions.get(cookie)
        if session is None and (method, path) not in OPEN:
            return 401, "session_required", []
        state["session"], state["cookie"] = session, cookie if session else None
        if not changes:
            return None
        if session is None or not session.csrf_ok(header(b"x-csrf-token")):
            return 403, "csrf_token_invalid", []
        length = header(b"content-length")
        if header(b"transfer-encoding") is not None and length is None:
            return 411, "body_length_required", []
        try:
            size = int(length or 0)
        except ValueError:
            return 411, "body_length_required", []
        if size > MAX_BODY:
            return 413, "body_too_large", []
        if size > 0:
            kind = (header(b"content-type") or "").split(";")[0].strip().lower()
            if kind != "application/json":
                return 415, "content_type_json", []
        return None
