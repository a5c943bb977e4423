"""The counter session behind the clerk's kiosk UI: the one object the UI's
routes talk to, wrapping the agent's `Counter` (firmware's public service API)
with what a busy counter needs around a sale. What it shows is built in
terminal_ui/views.py, the ledger's exports in terminal_ui/exports.py, its
settings read by terminal_ui/config.py.

    kiosk = Kiosk(agent_config, kiosk_settings).start()
    kiosk.sign_in(pin)                 # each record carries the clerk
    # the PN532 poller identifies the card tapped -> state "sale" with the subject
    kiosk.scan("…label QR…")           # or add(product, spec, packs)
    kiosk.checkout()                   # decided, committed, then shown; receipt printed
    kiosk.finish()                     # "请取回您的卡", back to idle
    kiosk.start_return() / scan_return(code) / commit_return()   # packaging returns

Every change produces a new `snapshot()` that is pushed to listeners (the UI's
server-sent events), so the screen follows the counter without polling.

The rule that matters most: the snapshot says "approved" only after
`Counter.checkout` returned, and `checkout` returns only after the sale is a
committed ledger row. While the decision is pending the screen says "deciding";
if the process dies then, the next screen a clerk sees is a fresh start, never
an approval that the ledger does not hold. (The browser test proves it by
building the kiosk with an agent that holds every sale between the decision and
the commit, tests/support/kiosk_failpoints.py, and killing it there; the shipped
terminal has no switch for that.)

Hardware is optional and chosen by URL in the `[kiosk]` table of the agent's
TOML (terminal_ui/config.py), opened through firmware's device factory
(firmware/devices.py): the PN532 reader (`reader`), the receipt printer
(`printer`), the camera (`camera`); spoken prompts (`voice`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from typing import Callable

from firmware import receipt as _receipt
from firmware.agent import Agent
from firmware.clerk_pins import PinLockout, check_pin
from firmware.config import AgentConfig
from firmware.counter import Cart, CounterError, Identity, Outcome
from firmware.devices import PRESENT, READER_ERROR, READER_OK, REMOVED, DeviceFactory, PrinterError
from firmware.face import retry as _face_retry
from firmware.ledger import LedgerError
from firmware.prices import PriceError, parse_yuan
from firmware.voice import CommandPlayer, RecordingPlayer, Voice
from protocols import card as _card, catalogue as _catalogue, labelcode, policy, reasons
from protocols.clock import wall_ms as now_ms
from terminal_ui import views
from terminal_ui.config import Clerk, KioskSettings
from terminal_ui.errors import ClerkLocked, KioskError, error_view
from terminal_ui.exports import LedgerExports

log = logging.getLogger(__name__)


class Kiosk:
    def __init__(self, config: AgentConfig, settings: KioskSettings, agent: Agent | None = None,
                 wall_ms: Callable[[], int] = now_ms, monotonic=time.monotonic,
                 devices: DeviceFactory | None = None):
        self.config = config
        self.settings = settings
        self.wall_ms = wall_ms
        self._monotonic = monotonic
        self.agent = agent or Agent(config, wall_ms=wall_ms)
        self.counter = self.agent.counter
        self.devices = devices or DeviceFactory()
        self.exports = LedgerExports(self.agent, self.counter, config, settings, wall_ms)
        self._lock = threading.RLock()
        self._listeners: list[Callable[[dict], None]] = []
        self._version = 0
        self.boot = wall_ms()     # a restarted agent starts its versions again
        self.clerk: Clerk | None = None
        self.owner: str | None = None              # the UI client (session) the clerk signed in on
        self._pin_lock = threading.Lock()          # one PIN check at a time: scrypt is CPU and memory
        self.pin_lockout = PinLockout(
            settings.pin_state or config.ledger_path.with_name(config.ledger_path.stem + ".pin-lock.json"),
            after=settings.lock_after, seconds=settings.lock_seconds, max_seconds=settings.lock_max_seconds,
            forget_s=settings.lock_forget_s, wall_ms=wall_ms, monotonic=monotonic)
        self.pin_rehash = sorted(c.id for c in settings.clerks if c.legacy)
        if self.pin_rehash:
            log.warning("kiosk clerks with old pin_sha256 entries cannot sign in terminal=%s clerks=%s: "
                        "python -m firmware kiosk-pin ID prints each new line", config.terminal,
                        ",".join(self.pin_rehash))
        self._reset_session()
        self.screen = "signin"
        self.message: dict | None = None
        self._sold_codes: dict[str, int] = {}     # label unit code -> seq of the sale it left in
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.reader = self.poller = self.camera = self.printer = None
        self.reader_state = "none"
        self.printer_state = "none" if not settings.printer else "unknown"
        cache = settings.voice_cache or config.ledger_path.with_name("voice-cache")
        player = CommandPlayer(settings.player) if settings.player else RecordingPlayer()
        self.voice = Voice(cache, player=player, enabled=settings.voice)
        self.last_status: dict = {}

    # ------------------------------------------------------------------ life cycle

    def start(self) -> "Kiosk":
        self._index_sold_codes()
        self.agent.start()
        self.voice.start()
        threading.Thread(target=self.voice.prewarm, name="voice-prewarm", daemon=True).start()
        if self.settings.printer:
            self.printer = self.devices.printer(self.settings.printer, columns=self.settings.printer_columns)
        if self.settings.reader:
            self._start_reader(self.settings.reader)
        if self.settings.camera:
            try:
                self.camera = self.devices.camera(self.settings.camera)
            except Exception as exc:   # a camera fault must not keep the counter closed
                log.warning("camera not opened url=%s: %s", self.settings.camera, exc)
        self._spawn(self._status_loop, "kiosk-status")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.poller is not None:
            self.poller.stop()
        if self.reader is not None:
            self.reader.close()
        if self.camera is not None:
            self.camera.close()
        self.voice.stop()
        for thread in self._threads:
            thread.join(5)
        self.agent.stop()

    def _spawn(self, target, name):
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # ------------------------------------------------------------------ hardware

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

    # ------------------------------------------------------------------ listeners and state

    def add_listener(self, fn: Callable[[dict], None], session: str | None = None) -> None:
        """`fn(state)` on every change: the whole counter if `session` holds
        it (`holds`), else only `public_snapshot()`, decided at each change."""
        with self._lock:
            self._listeners.append((fn, session))

    def remove_listener(self, fn) -> None:
        with self._lock:
            self._listeners = [(f, s) for f, s in self._listeners if f is not fn]

    def _changed(self) -> None:
        with self._lock:
            self._version += 1
            full = self.snapshot()
            public = self._public_of(full)
            listeners = [(fn, full if self.holds(session) else public) for fn, session in self._listeners]
        for fn, view in listeners:
            try:
                fn(view)
            except Exception:
                log.exception("kiosk listener failed")

    def _reset_session(self) -> None:
        self.identity: Identity | None = None
        self.subject_view: dict | None = None
        self.cart = Cart()
        self.outcome: dict | None = None
        self.returned: list[dict] = []
        self.card_present = False
        self.receipt_state: dict | None = None
        self.pending_buyer: Identity | None = None   # another card tapped while the cart was open
        self.pending_view: dict | None = None

    def holds(self, session: str | None) -> bool:
        """Whether `session` (a UI client; None for an in-process caller) is
        the one a clerk signed in on: only it sees and drives the counter."""
        return self.clerk is not None and self.owner == session

    def view_for(self, session: str | None) -> dict:
        with self._lock:
            return self.snapshot() if self.holds(session) else self.public_snapshot()

    def public_snapshot(self) -> dict:
        """What any client of the UI sees before its clerk signs in: the
        sign-in screen and the terminal's health, nothing about people or
        sales (no clerk, subject, cart, decision, message, backlog or ledger)."""
        with self._lock:
            return self._public_of({"boot": self.boot, "version": self._version, "voice": self.voice.enabled,
                                    "status": self.status()})

    def _public_of(self, full: dict) -> dict:
        status = full["status"]
        return {"boot": full["boot"], "version": full["version"], "screen": "signin", "clerk": None,
                "message": None, "voice": full["voice"], "pin_rehash": bool(self.pin_rehash),
                "status": {k: status[k] for k in ("online", "catalogue", "params", "reader", "printer", "camera")}}

    def snapshot(self) -> dict:
        """Everything the screen shows, as JSON (for the client that `holds`
        the counter, and in-process callers)."""
        with self._lock:
            return {
                "boot": self.boot,
                "version": self._version,
                "screen": self.screen,
                "clerk": {"id": self.clerk.id, "name": self.clerk.name, "owner": self.clerk.owner} if self.clerk else None,
                "subject": self.subject_view,
                "pending_buyer": self.pending_view,
                "cart": [self._line_view(i, line) for i, line in enumerate(self.cart.lines)],
                "bill": views.cart_bill(self.counter, self.cart.lines) if self.cart.lines else None,
                "outcome": self.outcome,
                "returned": list(self.returned),
                "return_deposit_fen": sum(r["deposit_fen"] for r in self.returned),
                "message": self.message,
                "receipt": self.receipt_state,
                "voice": self.voice.enabled,
                "shop": self.settings.shop_name or self.config.shop,
                "status": self.status(),
            }



    def _product(self, product: str, spec: str) -> tuple[dict | None, dict | None]:
        return views.product_of(self.counter, product, spec)

    def _line_view(self, index: int, line) -> dict:
        return views.line_view(self.counter, index, line)

    def subject_panel(self, identity: Identity) -> dict:
        """Masked name, village, credit grade, remaining quota (views.subject_panel)."""
        return views.subject_panel(self.counter, self.agent.config_store, identity)

    def _outcome_view(self, outcome: Outcome, cart: Cart) -> dict:
        return views.outcome_view(self.counter, self.config.terminal, outcome, cart)

    def _message(self, exc: Exception | None = None, **extra) -> None:
        self.message = dict(error_view(exc), **extra) if exc is not None else (extra or None)

    # ------------------------------------------------------------------ status bar

    def status(self) -> dict:
        raw = self.counter.status()
        versions = raw.get("versions") or {}
        return {
            "online": bool(raw.get("online")),
            "backlog": raw.get("backlog", 0),
            "head": raw.get("head", 0),
            "acked": raw.get("acked", 0),
            "last_sync_ms": raw.get("last_ack_ms"),
            "catalogue": versions.get("catalogue"),
            "params": versions.get("params"),
            "config_behind": raw.get("config_behind") or [],
            "reader": self.reader_state,
            "printer": self.printer_state,
            "camera": self.camera.status if self.camera is not None else "none",
        }

    def _status_loop(self) -> None:
        """Push the status bar when it changes (checked every 0.5 s: online
        state and backlog come from the uplink's threads)."""
        while not self._stop.wait(0.5):
            try:
                status = self.status()
            except Exception:
                log.exception("status failed")
                continue
            if status != self.last_status:
                self.last_status = status
                self._changed()

    # ------------------------------------------------------------------ clerk

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

    def _need_clerk(self, session: str | None = None) -> Clerk:
        if not self.holds(session):
            raise KioskError("clerk_required")
        return self.clerk

    def need_clerk(self, session: str | None = None) -> Clerk:
        """The signed-in clerk if `session` holds the counter, else
        `clerk_required` (the ledger and the state are for that client only)."""
        with self._lock:
            return self._need_clerk(session)

    def _busy_check(self) -> None:
        if self.screen == "deciding":
            raise KioskError("kiosk_busy")

    # ------------------------------------------------------------------ identifying

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


    # ------------------------------------------------------------------ cart

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

    def search(self, query: str, limit: int = 20) -> list[dict]:
        """Catalogue products whose name, registration number or EAN contains the
        query; each pack is one choice. Banned products are listed (marked) so the
        clerk learns why one cannot be sold instead of not finding it."""
        query = (query or "").strip().lower()
        data = self.counter.index().data
        date = self.counter.today()
        out = []
        for key in sorted(data["products"]):
            prod = data["products"][key]
            hay = (key + " " + prod.get("name", "") + " " + prod.get("reg_text", "")).lower()
            packs = prod.get("packs", {})
            if query and query not in hay and not any(query in (p.get("ean") or "") for p in packs.values()):
                continue
            status = _catalogue.status_on(data, prod, date)["status"]
            for spec in sorted(packs):
                out.append({"product": key, "spec": spec, "name": prod.get("name", key), "kind": prod.get("kind"),
                            "pack": _receipt.amount_text(packs[spec]["net"], packs[spec]["unit"]), "status": status,
                            "fen": self.agent.prices.price(key, spec)})
                if len(out) >= limit:
                    return out
        return out

    # ------------------------------------------------------------------ prices

    def _need_owner(self, session: str | None) -> Clerk:
        clerk = self._need_clerk(session)
        if not clerk.owner:
            raise KioskError("owner_required", clerk.id)
        return clerk

    def price_list(self, query: str = "", limit: int = 50) -> dict:
        """The 价格 screen: catalogue packs with the shop's price, and the deposit."""
        return {"products": self.search(query, limit), "deposit_fen": self.agent.prices.deposit_fen(),
                "changes": self.agent.prices.changes(20)}

    def set_price(self, product: str, spec: str, yuan: str | None, session: str | None = None) -> int | None:
        """The owner sets (or, with None, removes) one pack's price; lines
        already in a cart keep the price they went in at. Returns what is
        stored, in fen."""
        with self._lock:
            clerk = self._need_owner(session)
            if _catalogue.pack(self.counter.index().data, product, spec)[0] is None:
                raise PriceError("price_unknown_product", "%s/%s" % (product, spec))
            fen = None if yuan is None else parse_yuan(yuan)
            if fen is None:
                self.agent.prices.remove(product, spec, clerk.id, self.wall_ms())
            else:
                self.agent.prices.set(product, spec, fen, clerk.id, self.wall_ms())
        self._changed()
        return fen

    def set_deposit(self, yuan: str, session: str | None = None) -> int:
        with self._lock:
            clerk = self._need_owner(session)
            fen = parse_yuan(yuan)
            self.agent.prices.set_deposit(fen, clerk.id, self.wall_ms())
        self._changed()
        return fen

    # ------------------------------------------------------------------ deciding

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
        except (LedgerError, CounterError) as exc:
            with self._lock:
                self.screen = "sale"
                self._message(exc)
            self._changed()
            raise
        except Exception as exc:
            with self._lock:
                self.screen = "sale"
                self._message(exc)
            self._changed()
            raise
        view = self._outcome_view(outcome, cart)
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

    # ------------------------------------------------------------------ receipts

    def _print_sale(self, outcome: Outcome, cart: Cart, identity: Identity) -> None:
        if self.printer is None:
            return
        params = self.agent.config_store.params()
        items = []
        bill = outcome.charge
        for i, (line, verdict) in enumerate(zip(cart.lines, outcome.items)):
            prod, pack = self._product(line.product, line.spec)
            approved = verdict["decision"] == policy.APPROVE
            items.append(_receipt.ReceiptItem(
                prod["name"] if prod else line.product, line.packs,
                _receipt.amount_text(pack["net"], pack["unit"]) + "/件" if pack else "",
                approved, "" if approved else "；".join(reasons.text(c) for c in verdict.get("reasons") or []),
                bill.lines[i] if bill else None))
        remaining = [(_receipt.category_name(c), _receipt.amount_text(v, _receipt.category_unit(c, params)))
                     for c, v in sorted((outcome.remaining or {}).items())
                     if c in (outcome.consumption or {})]
        doc = _receipt.SaleReceipt(
            shop=self.settings.shop_name or self.config.shop, terminal=self.config.terminal, seq=outcome.seq,
            time_ms=self.wall_ms(), clerk=self.clerk.name if self.clerk else "", subject_name=(self.subject_view or {}).get("name", "—"),
            subject_id=identity.subject, items=items, mode=outcome.mode, remaining=remaining,
            deposit_fen=bill.deposit_fen if bill else 0,
            total_fen=bill.total_fen if bill and bill.priced else None)
        self._print(doc, outcome.seq)

    def _print(self, doc: _receipt.SaleReceipt, seq: int) -> None:
        data = _receipt.render(doc, self.settings.printer_columns)
        with self._lock:
            self.receipt_state = {"seq": seq, "state": "printing"}

        def job():
            try:
                self.printer.print(data)
                state = {"seq": seq, "state": "printed"}
                self.printer_state = "ok"
            except PrinterError as exc:
                log.warning("receipt not printed seq=%d: %s", seq, exc)
                state = dict({"seq": seq, "state": "failed"}, **error_view(exc))
                self.printer_state = "error"
            with self._lock:
                if self.receipt_state and self.receipt_state.get("seq") == seq:
                    self.receipt_state = state
            self._changed()

        self._spawn(job, "receipt-%d" % seq)
        self._last_receipt = (doc, seq)

    def reprint(self, session: str | None = None) -> None:
        with self._lock:
            self._need_clerk(session)
        last = getattr(self, "_last_receipt", None)
        if self.printer is None or last is None:
            raise KioskError("nothing_to_void", "no receipt")
        self._print(*last)

    # ------------------------------------------------------------------ packaging returns

    def _index_sold_codes(self) -> None:
        """label code -> sale seq from this terminal's ledger, so a returned
        container links to the sale it left the shop in (first sale wins: a
        unit code is unique per pack)."""
        for text in self.agent.ledger.rows():
            record = json.loads(text)
            if record["type"] == "sale":
                for item in record["body"]["items"]:
                    code = item.get("code")
                    if code and item.get("decision", "approve") == "approve":
                        self._sold_codes.setdefault(code, record["seq"])

    def start_return(self, session: str | None = None) -> None:
        with self._lock:
            self._need_sale(session)
            self.cart = Cart()
            self.outcome = None
            self.returned = []
            self.screen = "return"
            self.message = None
        self._changed()

    def scan_return(self, text: str, session: str | None = None) -> dict:
        with self._lock:
            self._need_clerk(session)
            if self.screen != "return":
                raise KioskError("subject_required")
            try:
                parsed = labelcode.parse(text)
                if parsed["kind"] != "unit_code":
                    raise KioskError("return_code_required", parsed.get("code", ""))
                code = parsed["code"]
                if any(r["code"] == code for r in self.returned):
                    raise KioskError("return_duplicate", code)
                name = product = spec = None
                try:
                    hit = labelcode.resolve(parsed, self.counter.index())
                    product, spec = hit["product"], hit["spec"]
                    prod, pack = self._product(product, spec)
                    name = prod["name"] if prod else product
                except labelcode.LabelError:
                    pass      # an unknown product's container is still taken back
            except (KioskError, labelcode.LabelError) as exc:
                self._message(exc)
                self._changed()
                raise
            entry = {"code": code, "product": product, "spec": spec, "name": name or code,
                     "link": self._sold_codes.get(code), "deposit_fen": self.settings.deposit_fen}
            entry["link_id"] = _receipt.record_id(self.config.terminal, entry["link"]) if entry["link"] else None
            self.returned.append(entry)
            self.message = None
        self._changed()
        return entry

    def cancel_return(self, session: str | None = None) -> None:
        with self._lock:
            self._need_clerk(session)
            self.returned = []
            self.screen = "sale" if self.identity else "idle"
        self._changed()

    def commit_return(self, session: str | None = None) -> dict:
        with self._lock:
            clerk = self._need_clerk(session)
            if self.screen != "return" or self.identity is None:
                raise KioskError("subject_required")
            if not self.returned:
                raise KioskError("return_empty")
            links = sorted({r["link"] for r in self.returned if r["link"]})
            deposit = sum(r["deposit_fen"] for r in self.returned)
            body = {"subject": self.identity.subject, "codes": [r["code"] for r in self.returned],
                    "clerk": clerk.id, "deposit_fen": deposit}
            if links:
                body["links"] = links
            stored = self.agent.record("return", body)
            returned = list(self.returned)
            self.outcome = {"record": "return", "approved": True, "seq": stored.seq, "mode": None,
                            "record_id": _receipt.record_id(self.config.terminal, stored.seq),
                            "links": links, "deposit_fen": deposit, "returned": returned, "items": [],
                            "voided": False}
            self.returned = []
            self.screen = "result"
        log.info("packaging return terminal=%s seq=%d subject=%s containers=%d links=%s", self.config.terminal,
                 stored.seq, body["subject"], len(returned), links)
        self.voice.say("return_done")
        if self.printer is not None:
            doc = _receipt.SaleReceipt(
                shop=self.settings.shop_name or self.config.shop, terminal=self.config.terminal, seq=stored.seq,
                time_ms=self.wall_ms(), clerk=clerk.name, subject_name=(self.subject_view or {}).get("name", "—"),
                subject_id=body["subject"], items=[_receipt.ReceiptItem(r["name"], 1, r["code"]) for r in returned],
                kind="return", deposit_fen=deposit, links=links)
            self._print(doc, stored.seq)
        self._changed()
        return self.outcome

    # ------------------------------------------------------------------ ledger

    def ledger_rows(self, before: int | None = None, limit: int = 50) -> dict:
        """Newest first, `limit` rows below seq `before` (paging for the screen)."""
        return self.exports.rows(before, limit)

    def ledger_csv(self):
        return self.exports.csv()

    def ledger_pdf(self) -> bytes:
        return self.exports.pdf()






    def set_voice(self, on: bool, session: str | None = None) -> None:
        with self._lock:
            self._need_clerk(session)
        self.voice.set_enabled(on)
        self._changed()

    error_view = staticmethod(error_view)

