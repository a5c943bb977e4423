"""Who is at the counter: the clerk's PIN sign-in, its lock-out, and the rule
that only the UI client the clerk signed in on sees and drives the counter.

Every other part of the kiosk asks here first (`_need_clerk`, `_need_owner`,
`_busy_check`), so "who may do this now" is answered in one place. PINs are
scrypt hashes (firmware/clerk_pins.py): checking one costs a Pi a noticeable
fraction of a second, so they are checked one at a time and outside the
session lock, and a card tap or a pushed state never waits for scrypt.
"""

from __future__ import annotations

import logging

from firmware.clerk_pins import check_pin
from terminal_ui.config import Clerk
from terminal_ui.errors import ClerkLocked, KioskError

log = logging.getLogger(__name__)


class ClerkSignIn:
    """The clerk's part of `Kiosk` (terminal_ui/kiosk/session.py holds the state)."""

    def sign_in(self, pin: str, session: str | None = None) -> Clerk:
        """The clerk whose PIN this is, or `clerk_pin_wrong`; `clerk_locked`
        (with `retry_after`) while the lock-out runs, without checking the PIN.
        The sign-in belongs to `session` (the UI client that sent the PIN):
        only it sees and drives the counter until it signs out or another
        client signs in (a handover: a Chromium restarted has a new session).
        PINs are checked one at a time and outside the session lock (a card
        tap or a pushed state never waits for scrypt)."""
        with self._pin_lock:
            left = self.pin_lockout.remaining()
            if left > 0:
                raise ClerkLocked(left)
            with self._lock:
                self._busy_check()
            pin = str(pin)
            clerk = next((c for c in self.settings.clerks if not c.legacy and check_pin(c.id, pin, c.pin_hash)),
                         None)
            if clerk is None:
                locked = self.pin_lockout.failed()
                log.warning("kiosk sign-in refused terminal=%s%s", self.config.terminal,
                            " locked_s=%.0f" % locked if locked else "")
                raise KioskError("clerk_pin_wrong")
            self.pin_lockout.succeeded()
            with self._lock:
                self._busy_check()
                self.clerk = clerk
                self.owner = session
                self._reset_session()
                self.screen = "idle"
                self.message = None
        log.info("clerk signed in terminal=%s clerk=%s", self.config.terminal, clerk.id)
        self.voice.say("tap")
        self._changed()
        return clerk

    def sign_out(self, session: str | None = None) -> None:
        with self._lock:
            self._need_clerk(session)
            self._busy_check()
            self._signed_out()
        self._changed()

    def end_session(self, session: str) -> None:
        """A UI client's session is gone (expired, dropped): its sign-in ends
        with it, unless a decision is being committed (the next sweep retries)."""
        with self._lock:
            if not self.holds(session) or self.screen == "deciding":
                return
            self._signed_out()
        log.info("clerk signed out with the session's end terminal=%s", self.config.terminal)
        self._changed()

    def _signed_out(self) -> None:
        self.clerk = None
        self.owner = None
        self._reset_session()
        self.screen = "signin"
        self.message = None

    def holds(self, session: str | None) -> bool:
        """Whether `session` (a UI client; None for an in-process caller) is
        the one a clerk signed in on: only it sees and drives the counter."""
        return self.clerk is not None and self.owner == session

    def _need_clerk(self, session: str | None = None) -> Clerk:
        if not self.holds(session):
            raise KioskError("clerk_required")
        return self.clerk

    def need_clerk(self, session: str | None = None) -> Clerk:
        """The signed-in clerk if `session` holds the counter, else
        `clerk_required` (the ledger and the state are for that client only)."""
        with self._lock:
            return self._need_clerk(session)

    def _need_owner(self, session: str | None) -> Clerk:
        clerk = self._need_clerk(session)
        if not clerk.owner:
            raise KioskError("owner_required", clerk.id)
        return clerk

    def _busy_check(self) -> None:
        if self.screen == "deciding":
            raise KioskError("kiosk_busy")
