"""Deciding the cart and what follows on the result screen: the decision and
the sale record it leaves, its void, and "next customer".

The rule that matters most lives here: the screen says "approved" only after
`Counter.checkout` returned, and `checkout` returns only after the sale is a
committed ledger row. While the decision is pending the screen says
"deciding"; if the process dies then, the next screen a clerk sees is a fresh
start, never an approval that the ledger does not hold. (The browser test
proves it by building the kiosk with an agent that holds every sale between
the decision and the commit, tests/support/kiosk_failpoints.py, and killing it
there; the shipped terminal has no switch for that.)
"""

from __future__ import annotations

import dataclasses

from firmware.counter import Cart, CounterError
from terminal_ui import views
from terminal_ui.errors import KioskError


class Checkout:
    """The decision's part of `Kiosk` (terminal_ui/kiosk/session.py holds the state)."""

    def checkout(self, session: str | None = None) -> dict:
        """Decide, commit, then show. The screen shows "deciding" meanwhile and
        the outcome only once `Counter.checkout` returned, i.e. after the commit."""
        with self._lock:
            identity = self._need_sale(session)
            if self.screen == "return":
                raise KioskError("kiosk_busy")
            if not self.cart.lines:
                raise CounterError("cart_empty")
            clerk = self.clerk.id
            cart = Cart([dataclasses.replace(line) for line in self.cart.lines])
            self.screen = "deciding"
            self.message = None
        self._changed()
        try:
            outcome = self.counter.checkout(identity, cart, clerk=clerk)
        except Exception as exc:
            with self._lock:
                self.screen = "sale"
                self._message(exc)
            self._changed()
            raise
        view = views.outcome_view(self.counter, self.config.terminal, outcome, cart)
        with self._lock:
            self.outcome = view
            self.screen = "result"
            if outcome.approved:
                for line in cart.lines:
                    if line.code:
                        self._sold_codes.setdefault(line.code, outcome.seq)
            self.subject_view = self.subject_panel(identity)
        if outcome.approved:
            self.voice.say("approved_offline" if outcome.mode == "offline" else "approved")
            self._print_sale(outcome, cart, identity)
        else:
            self.voice.say("refused", outcome.codes[0] if outcome.codes else None)
        self._changed()
        return view

    def void(self, reason: str = "clerk_void", session: str | None = None) -> dict:
        """Void the sale on screen (a void record; the quota is given back)."""
        with self._lock:
            self._need_clerk(session)
            if not self.outcome or not self.outcome["approved"] or self.outcome["voided"]:
                raise KioskError("nothing_to_void")
            stored = self.counter.void(self.outcome["seq"], reason, clerk=self.clerk.id)
            self.outcome = dict(self.outcome, voided=True, void_seq=stored.seq)
            if self.identity:
                self.subject_view = self.subject_panel(self.identity)
        self._changed()
        return self.outcome

    def finish(self, session: str | None = None) -> None:
        """Next customer: back to the idle screen, and remind the farmer of the card."""
        with self._lock:
            self._need_clerk(session)
            self._busy_check()
            had_card = self.identity is not None and self.identity.card is not None
            self._reset_session()
            self.screen = "idle"
            self.message = None
        if had_card:
            self.voice.say("take_card")
        self._changed()
