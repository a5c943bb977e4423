"""The cart of the buyer on screen: products scanned (label QR code, barcode)
or picked, their pack counts, and a new cart for the same buyer after a
decision.

Nothing goes into a cart before the clerk has said whose it is
(`_need_sale`): a subject must be identified, no decision may be pending, and
a second buyer's card must have been answered. A banned product is named the
moment it is scanned, not only refused at checkout, so the clerk can tell the
farmer and take it out.
"""

from __future__ import annotations

from firmware.counter import Cart, CounterError, Identity
from protocols import catalogue as _catalogue, labelcode, policy
from terminal_ui import views
from terminal_ui.errors import KioskError


class CartEditing:
    """The cart's part of `Kiosk` (terminal_ui/kiosk/session.py holds the state)."""

    def _need_sale(self, session: str | None = None) -> Identity:
        self._need_clerk(session)
        if self.identity is None:
            raise KioskError("subject_required")
        self._busy_check()
        if self.pending_buyer is not None:     # nothing is sold or scanned until the clerk said for whom
            raise KioskError("buyer_choice_pending")
        if self.screen == "result":       # a new cart after a finished sale: same buyer
            self.cart = Cart()
            self.outcome = None
            self.receipt_state = None
            self.screen = "sale"
        return self.identity

    def scan(self, text: str, packs: int = 1, session: str | None = None) -> dict:
        with self._lock:
            try:
                self._need_sale(session)
                if self.screen == "return":
                    return self.scan_return(text, session=session)
                line = self.counter.scan(self.cart, text, packs)
                banned = self._warn_if_banned(line)
            except (KioskError, CounterError, labelcode.LabelError) as exc:
                self._message(exc)
                self._changed()
                raise
        if banned:
            self.voice.say("refused", "product_banned")
        self._changed()
        return {"product": line.product, "spec": line.spec, "packs": line.packs}

    def add(self, product: str, spec: str, packs: int = 1, session: str | None = None) -> None:
        with self._lock:
            try:
                self._need_sale(session)
                banned = self._warn_if_banned(self.counter.add(self.cart, product, spec, packs))
            except (KioskError, CounterError) as exc:
                self._message(exc)
                self._changed()
                raise
        if banned:
            self.voice.say("refused", "product_banned")
        self._changed()

    def _warn_if_banned(self, line) -> bool:
        """A banned product is named, in Chinese, the moment it is scanned, not
        only at checkout (where the policy refuses it anyway): the clerk can tell
        the farmer now and take it out of the cart."""
        view = views.line_view(self.counter, 0, line)
        if view["status"] == _catalogue.BANNED:
            self._message(CounterError("product_banned"), warning=True, name=view["name"])
            return True
        self.message = None
        return False

    def set_packs(self, index: int, packs: int, session: str | None = None) -> None:
        with self._lock:
            self._need_sale(session)
            if not 0 <= index < len(self.cart.lines):
                raise KioskError("cart_line_missing", str(index))
            if not isinstance(packs, int) or isinstance(packs, bool) or not 1 <= packs <= 100000:
                raise CounterError("quantity_invalid", repr(packs))
            self.cart.lines[index].packs = packs
        self._changed()

    def remove(self, index: int, session: str | None = None) -> None:
        with self._lock:
            self._need_sale(session)
            if not 0 <= index < len(self.cart.lines):
                raise KioskError("cart_line_missing", str(index))
            self.cart.remove(index)
        self._changed()

    # ------------------------------------------------------------------ after a decision

    def continue_same_buyer(self, session: str | None = None) -> None:
        """继续为此人购买: after a decision or a return, a new empty cart for the
        buyer on screen, without tapping the card again (a farmer buys item
        after item; "下一位" would clear the buyer)."""
        with self._lock:
            self._need_clerk(session)
            if self.screen != "result":
                raise KioskError("subject_required")
            self._need_sale(session)
        self._changed()

    def change_to_allowed(self, index: int, session: str | None = None) -> None:
        """A line refused for its quantity, again with the packs that still fit
        (the decision's `max_packs`), in a new cart for the same buyer: one tap
        instead of counting down with "−", then the clerk decides it again.
        Lines already sold are not repeated."""
        with self._lock:
            self._need_clerk(session)
            items = (self.outcome or {}).get("items") or []
            if self.screen != "result" or not 0 <= index < min(len(items), len(self.cart.lines)):
                raise KioskError("cart_line_missing", str(index))
            allowed = items[index].get("max_packs")
            if items[index]["decision"] == policy.APPROVE or not allowed or allowed < 1:
                raise KioskError("no_allowed_quantity", str(index))
            line = self.cart.lines[index]
            self._need_sale(session)
            self.cart = Cart([type(line)(line.product, line.spec, allowed, line.code)])
            self.message = None
        self._changed()
