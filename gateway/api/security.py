"""Request hygiene shared by every endpoint: body size limits, response headers
that keep the dashboard from being framed or fed foreign scripts, and the input
types that refuse markup and odd characters before any handler runs."""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, StringConstraints
from pydantic_core import PydanticCustomError

from gateway.supervision.cases import ALLOWED_CONTROLS, HIDDEN_CATEGORIES, hidden_character

MAX_JSON_BODY = 16 * 1024
MAX_PHOTO_BODY = 5 * 1024 * 1024 + 1024
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f<>]")

CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


HIDDEN_CHARACTERS = "text_hidden_characters"   # the error type, and the code of the 422 it gives


def _plain(text: str) -> str:
    """Free text (notes) is shown to other users: angle brackets and control
    characters are refused outright rather than escaped, so stored text is the
    same everywhere it is shown, exported or forwarded upstream."""
    if _CONTROL.search(text):
        raise ValueError("text must not contain < > or control characters")
    return text


def _visible(value):
    """Before the pattern: characters that change how text reads without
    being seen (bidirectional overrides and isolates, zero-width characters:
    `cases.hidden_character`) get their own error type, naming the character,
    which the app answers as a 422 of that code (the pattern says the same in
    the schema, without saying which character)."""
    if isinstance(value, str):
        found = hidden_character(value)
        if found:
            raise PydanticCustomError(HIDDEN_CHARACTERS, "text must not contain invisible or text-direction "
                                                         "characters: {found}", {"found": found})
    return value


def _hidden_ranges() -> str:
    """The characters `cases.hidden_character` refuses, as a regex class body
    (\\uXXXX and \\UXXXXXXXX escapes, which Python, Rust and the schema's
    readers all take), so the published schema says what the notes may hold.
    Surrogates are left to the validator: no regex engine here takes them."""
    codes = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and chr(c) not in ALLOWED_CONTROLS
             and unicodedata.category(chr(c)) in HIDDEN_CATEGORIES]
    ranges, start, prev = [], codes[0], codes[0]
    for c in codes[1:] + [None]:
        if c is not None and c == prev + 1:
            prev = c
            continue
        ranges.append((start, prev))
        if c is not None:
            start = prev = c

    def esc(c: int) -> str:
        return f"\\u{c:04x}" if c <= 0xFFFF else f"\\U{c:08x}"
    return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges)


Ident = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
NOTES_PATTERN = "^[^<>" + _hidden_ranges() + "]*$"
Notes = Annotated[str, StringConstraints(max_length=2000, pattern=NOTES_PATTERN), AfterValidator(_plain),
                  BeforeValidator(_visible)]
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


HSTS = b"max-age=31536000"   # a year: once a browser has seen the dashboard over HTTPS it never tries plain HTTP


class SecurityHeaders:
    """Headers on every response; Strict-Transport-Security only on responses
    that went out over HTTPS (directly, or from a trusted proxy that said so)."""

    def __init__(self, app, img_origin: str | None = None):
        self.app = app
        # a configured tile server's origin may serve the map's images; nothing else is added
        self.csp = (CSP.replace("img-src 'self'", f"img-src 'self' {img_origin}") if img_origin else CSP).encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        https = scope.get("scheme") == "https"

        async def wrapped(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                            (b"x-frame-options", b"DENY"), (b"content-security-policy", self.csp),
                            (b"cache-control", b"no-store")]
                if https:
                    headers.append((b"strict-transport-security", HSTS))
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, wrapped)
