"""The kiosk UI's client sessions: one per browser (or other client), in
memory, each with its own CSRF token.

A clerk's sign-in belongs to the session it was made on (`Kiosk.holds`), never
to the whole kiosk: a page or a process on this machine that has not signed in
itself sees the sign-in screen and can do nothing, whatever the clerk's
browser has done.

- The cookie (`kiosk_session`, HttpOnly, SameSite=Strict, no expiry: it ends
  with the browser) carries a random token; the table keeps its SHA-256, so
  nothing in memory or in the logs can be replayed as a cookie. The kiosk knows
  a session by another random id, never by the cookie.
- Signing in makes a new session (new cookie, id and CSRF token) and drops the
  old one. Cookies ignore ports: a page on another port of 127.0.0.1 can set a
  `kiosk_session` cookie of its choosing in the clerk's browser; the clerk's
  sign-in then goes to a session that page never saw.
- A session unused for `idle_s` ends; past `limit` sessions the least recently
  used one ends (never the one holding the counter), so a flood of new
  sessions costs a bounded table. An ended session that held the counter signs
  its clerk out (`on_end`).
- A restart of the kiosk forgets every session: the page fetches a new one and
  shows the sign-in screen.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

COOKIE = "kiosk_session"
IDLE_S = 12 * 3600.0        # longer than a shop's day; the open page's event stream keeps it in use
LIMIT = 64


@dataclass
class Session:
    id: str                 # what the kiosk knows the client by (Kiosk.owner)
    csrf: str               # sent back by the page in X-CSRF-Token on every change
    seen: float

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token.encode("utf-8", "replace"), self.csrf.encode())


def _key(cookie: str) -> str:
    return hashlib.sha256(cookie.encode("utf-8", "replace")).hexdigest()


class Sessions:
    def __init__(self, holds: Callable[[str], bool] = lambda sid: False,
                 on_end: Callable[[str], None] = lambda sid: None, idle_s: float = IDLE_S, limit: int = LIMIT,
                 monotonic: Callable[[], float] = time.monotonic):
        self._holds, self._on_end = holds, on_end
        self.idle_s, self.limit, self._monotonic = idle_s, limit, monotonic
        self._by_key: OrderedDict[str, Session] = OrderedDict()    # least recently used first
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def get(self, cookie: str | None) -> Session | None:
        """The live session of this cookie (now marked used), or None."""
        if not cookie:
            return None
        now = self._monotonic()
        ended = None
        with self._lock:
            key = _key(cookie)
            session = self._by_key.get(key)
            if session is not None and now - session.seen > self.idle_s:
                self._drop(key)
                ended, session = session, None
            elif session is not None:
                session.seen = now
                self._by_key.move_to_end(key)
        if ended is not None:
            self._on_end(ended.id)
        return session

    def alive(self, sid: str) -> bool:
        with self._lock:
            return sid in self._ids

    def touch(self, sid: str) -> None:
        """An open event stream keeps its session in use."""
        now = self._monotonic()
        with self._lock:
            for key, session in self._by_key.items():
                if session.id == sid:
                    session.seen = now
                    self._by_key.move_to_end(key)
                    return

    def make(self) -> tuple[str, Session]:
        """A new cookie and session, not yet in the table (`add` puts it there)."""
        return secrets.token_urlsafe(32), Session(secrets.token_urlsafe(16), secrets.token_urlsafe(32),
                                                  self._monotonic())

    def add(self, cookie: str, session: Session, replacing: str | None = None) -> None:
        """Put a session made by `make` in the table, dropping the one of the
        cookie `replacing` (a sign-in), and whatever has to end to keep the
        table bounded."""
        ended = []
        with self._lock:
            if replacing:
                old = self._drop(_key(replacing))
                if old is not None:
                    ended.append(old)
            now = self._monotonic()
            for key, other in list(self._by_key.items()):
                if now - other.seen > self.idle_s:
                    ended.append(self._drop(key))
            while len(self._by_key) >= self.limit:
                victim = next((k for k, s in self._by_key.items() if not self._holds(s.id)), None)
                if victim is None:
                    break
                ended.append(self._drop(victim))
            session.seen = now
            self._by_key[_key(cookie)] = session
            self._ids.add(session.id)
        for old in ended:
            self._on_end(old.id)

    def _drop(self, key: str) -> Session | None:
        session = self._by_key.pop(key, None)
        if session is not None:
            self._ids.discard(session.id)
        return session

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_key)
