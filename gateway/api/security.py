"""Request hygiene shared by every endpoint: body size limits, response headers
that keep the dashboard from being framed or fed foreign scripts, and the input
types that refuse markup and odd characters before any handler runs."""

from __future__ import annotations

import json
import re
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

MAX_JSON_BODY = 16 * 1024
MAX_PHOTO_BODY = 5 * 1024 * 1024 + 1024
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f<>]")

CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def _plain(text: str) -> str:
    """Free text (notes) is shown to other users: angle brackets and control
    characters are refused outright rather than escaped, so stored text is the
    same everywhere it is shown, exported or forwarded upstream."""
    if _CONTROL.search(text):
        raise ValueError("text must not contain < > or control characters")
    return text


Ident = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
NOTES_PATTERN = r"^[^<>\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
Notes = Annotated[str, StringConstraints(max_length=2000, pattern=NOTES_PATTERN), AfterValidator(_plain)]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class LimitBody:
    """ASGI middleware: refuse bodies above the limit with 413 before a handler
    reads them, whether or not the client sent Content-Length."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit = MAX_PHOTO_BODY if scope["path"].endswith("/photos") else MAX_JSON_BODY
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                too_big = True
            if too_big:
                return await _reject(send, limit)
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                return await _reject(send, limit)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


async def _reject(send, limit: int):
    payload = json.dumps({"code": "payload_too_large", "message": f"body above {limit} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


class SecurityHeaders:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def wrapped(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                            (b"x-frame-options", b"DENY"), (b"content-security-policy", CSP.encode()),
                            (b"cache-control", b"no-store")]
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, wrapped)
