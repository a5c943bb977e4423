"""Who is buying: the subject identified by a card on the PN532 reader or by
the face at the camera, and what happens when a second buyer turns up while a
cart is open.

It exists apart from the cart because identification arrives on its own
threads (the reader's poller, a face check of several seconds) and has its own
field quirks: a reader that misses a deadline must not turn the card on it
into a new tap, a frame the farmer can fix is a hint and not the answer, and
farmers queue with their cards on the counter, so another subject is never
swapped in silently: one farmer's goods would go on another's quota.
"""

from __future__ import annotations

import logging

from firmware.counter import Cart, CounterError, Identity
from firmware.devices import PRESENT, READER_ERROR, READER_OK, REMOVED
from firmware.face import retry as _face_retry
from protocols import card as _card
from terminal_ui.errors import KioskError

log = logging.getLogger(__name__)


class BuyerIdentification:
    """The buyer's part of `Kiosk` (terminal_ui/kiosk/session.py holds the state)."""

    # ------------------------------------------------------------------ card reader

    def _start_reader(self, url: str) -> None:
        self.reader, self.poller = self.devices.card_reader(url, timeout=0.5, interval=0.05)
        self.reader_state = "starting"

        def events():
            """A reader that stops answering for a moment (a Pi busy with a face
            check can miss the PN532's deadline) is reported as an error and
            the card on it as removed, then both come back. The same card found
            again after that is the tap already served, not a new one: it must
            not wipe the decision on screen or open a sale after "next customer"."""
            reader_lost = False
            unsure = None            # UID "removed" because the reader was lost, not the card
            while not self._stop.is_set():
                event = self.poller.get(0.5)
                if event is None:
                    continue
                if event.kind == PRESENT:
                    self.reader_state = "ok"
                    same = event.uid is not None and event.uid == unsure
                    unsure = None
                    if event.error is not None:
                        code = event.error.code if isinstance(event.error, _card.CardRejected) else "card_reader_error"
                        self._card_failed(_card.CardRejected(code, str(event.error)))
                    elif same:
                        with self._lock:
                            self.card_present = True
                        self._changed()
                    else:
                        self.card_tapped(event.result, event.uid)
                    log.info("card present terminal=%s uid=%s %s", self.config.terminal,
                             event.uid.hex() if event.uid else "-",
                             "same card back after a reader error" if same else "new tap")
                elif event.kind == REMOVED:
                    unsure = event.uid if reader_lost else None
                    self._card_removed()
                elif event.kind == READER_ERROR:
                    reader_lost = True
                    self.reader_state = "error"
                    self._changed()
                elif event.kind == READER_OK:
                    reader_lost = False
                    self.reader_state = "ok"
                    self._changed()

        self._spawn(events, "kiosk-card-events")

    def card_tapped(self, payload: bytes, uid: bytes) -> None:
        """A card read by the poller (its thread): verify, then show the subject."""
        try:
            identity = self.counter.read_card(payload, uid)
        except (_card.CardRejected, CounterError) as exc:
            self._card_failed(exc)
            return
        self.identified(identity)

    def _card_failed(self, exc: Exception) -> None:
        log.info("card refused terminal=%s code=%s", self.config.terminal, getattr(exc, "code", exc))
        with self._lock:
            self.card_present = True
            self._message(exc)
        self.voice.say("refused", getattr(exc, "code", None))
        self._changed()

    def _card_removed(self) -> None:
        with self._lock:
            self.card_present = False
        self._changed()

    # ------------------------------------------------------------------ face

    def face_check(self, product_class: str = "normal", session: str | None = None) -> dict:
        """The buyer looks at the camera: frames matched against the shop's face
        gallery as last synced (`Counter.identify_by_face`; a burst with the
        liveness check when the product class needs it). With a card already
        tapped it confirms the holder (card+face). Returns what the page shows
        next to its face button: `{"identified": true, "subject", "method"}`,
        or `{"identified": false, "code", "zh", "en", "action"}` (no match, too
        dark, not live...), which is also the session's message. A frame the
        farmer can fix (too far, too dark, not facing the camera) is not the
        answer: the hint is shown (the message with `retrying`) and spoken, and
        the next frames are tried for a few seconds (`firmware.face.retry`)."""
        with self._lock:
            self._need_clerk(session)
        if self.camera is None:
            raise KioskError("camera_unavailable")
        live = self.agent.face.policy.required_for(product_class)
        with self._lock:
            card = self.identity if self.identity is not None and self.identity.card else None

        def attempt() -> Identity:
            frames = [f.image for f in self.camera.burst(6 if live else 1, timeout=3.0)]
            if not frames:
                raise KioskError("camera_unavailable", "no frame in 3 s")
            return self.counter.identify_by_face(frames, product_class, with_card=card)

        def hint(code: str) -> None:
            """A frame refused for something the farmer can fix: say what to do
            (shown beside the face button while the check goes on, and spoken)."""
            with self._lock:
                self._message(CounterError(code), retrying=True)
            self.voice.say("face_hint", code)
            self._changed()

        try:
            identity = _face_retry.keep_trying(attempt, hint, monotonic=self._monotonic, retry_on=(CounterError,))
        except CounterError as exc:
            log.info("face refused terminal=%s code=%s", self.config.terminal, exc.code)
            with self._lock:
                self._message(exc)
                refused = dict(self.message, identified=False)
            self.voice.say("face_hint" if exc.code in _face_retry.FIXABLE else "refused", exc.code)
            self._changed()
            return refused
        self.identified(identity)
        return {"identified": True, "subject": identity.subject, "method": identity.method}

    def _face_retry_lines(self, identity: Identity) -> list:
        """After a decision that asked for the face (`face_required`): the lines
        refused for it, kept for the card holder now confirmed by face, so the
        clerk decides them again instead of scanning them again. Lines already
        sold are not repeated."""
        if (self.screen != "result" or not self.outcome or self.identity is None
                or identity.method != "card+face" or self.identity.subject != identity.subject):
            return []
        return [line for line, item in zip(self.cart.lines, self.outcome.get("items") or [])
                if item["decision"] == "refuse" and any(r["code"] == "face_required" for r in item["reasons"])]

    # ------------------------------------------------------------------ the subject on screen

    def identified(self, identity: Identity) -> None:
        """A subject identified (card, face): the sale screen with its panel.
        Another subject while a cart is open is never a silent swap (farmers
        queue with their cards on the counter: one farmer's goods would go on
        another's quota): the clerk is asked, shown and spoken, which buyer the
        cart is for (`keep_cart_for_new_buyer`, `serve_current_buyer_first`)."""
        ask = False
        with self._lock:
            self.card_present = identity.card is not None
            if self.clerk is None:
                self._message(KioskError("clerk_required"))
            elif self.screen in ("deciding",):
                return
            elif self.screen == "return" and self.identity and self.identity.subject != identity.subject:
                self._message(KioskError("kiosk_busy"))
            elif self._cart_open_for_another(identity):
                self._ask_which_buyer(identity)
                ask = True
            else:
                if self.screen in ("result", "idle") or (self.identity and self.identity.subject != identity.subject):
                    retry = self._face_retry_lines(identity)
                    self._reset_session()
                    self.card_present = identity.card is not None
                    self.cart = Cart(retry)
                self.identity = identity
                self.subject_view = self.subject_panel(identity)
                if self.screen != "return":
                    self.screen = "sale"
                self.message = None
        if ask:
            self.voice.say("buyer_changed")
        self._changed()

    def _cart_open_for_another(self, identity: Identity) -> bool:
        return (self.screen == "sale" and bool(self.cart.lines) and self.identity is not None
                and self.identity.subject != identity.subject)

    def _ask_which_buyer(self, identity: Identity) -> None:
        self.pending_buyer = identity
        panel = self.subject_panel(identity)
        self.pending_view = {"id": panel["id"], "name": panel["name"], "method": panel["method"],
                             "village_name": panel["village_name"]}
        self._message(KioskError("buyer_changed"))
        log.info("another buyer while a cart is open terminal=%s method=%s", self.config.terminal, identity.method)

    def keep_cart_for_new_buyer(self, session: str | None = None) -> None:
        """The clerk's answer to `buyer_changed`: the open cart is the new
        buyer's (the first one only asked on their behalf); it is decided
        against the new buyer's quota."""
        with self._lock:
            self._need_clerk(session)
            self._busy_check()
            identity = self.pending_buyer
            if identity is None:
                raise KioskError("no_pending_buyer")
            self.pending_buyer = self.pending_view = None
            self.identity = identity
            self.card_present = identity.card is not None
            self.subject_view = self.subject_panel(identity)
            self.message = None
        self._changed()

    def serve_current_buyer_first(self, session: str | None = None) -> None:
        """The clerk's other answer: the cart stays with the buyer on screen;
        the new buyer taps again once this sale is done."""
        with self._lock:
            self._need_clerk(session)
            if self.pending_buyer is None:
                raise KioskError("no_pending_buyer")
            self.pending_buyer = self.pending_view = None
            self.message = None
        self._changed()
