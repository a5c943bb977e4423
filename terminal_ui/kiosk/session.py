"""The counter session behind the clerk's kiosk UI: the one object the UI's
routes talk to, wrapping the agent's `Counter` (firmware's public service API)
with what a busy counter needs around a sale.

    kiosk = Kiosk(agent_config, kiosk_settings).start()
    kiosk.sign_in(pin)                 # each record carries the clerk
    # the PN532 poller identifies the card tapped -> state "sale" with the subject
    kiosk.scan("…label QR…")           # or add(product, spec, packs)
    kiosk.checkout()                   # decided, committed, then shown; receipt printed
    kiosk.finish()                     # "请取回您的卡", back to idle
    kiosk.start_return() / scan_return(code) / commit_return()   # packaging returns

`Kiosk` is one object because the counter is one state machine (signin, idle,
sale, deciding, result, return) guarded by one lock: a card tapped on the
reader's thread and a button pressed on the page must see the same screen.
Its work is split by concern, one module each, every one a part of this class
that reads and writes the state kept here:

| module | part |
|---|---|
| clerk.py | the clerk's PIN sign-in and which UI client holds the counter |
| buyer.py | the buyer: card on the reader, face at the camera, a second buyer |
| cart.py | the cart and its pack counts, a new cart for the same buyer |
| checkout.py | the decision and its sale record, void, next customer |
| receipts.py | receipts on the printer, reprint |
| returns.py | packaging returns and their deposit |
| prices.py | catalogue search, the owner's prices and deposit |

This module keeps the state, the life cycle (devices opened, threads started
and stopped) and what is pushed to the screen: every change produces a new
`snapshot()` that goes to listeners (the UI's server-sent events), so the
screen follows the counter without polling. What it shows is built in
terminal_ui/views.py, the ledger's exports in terminal_ui/exports.py, its
settings read by terminal_ui/config.py.

Hardware is optional and chosen by URL in the `[kiosk]` table of the agent's
TOML (terminal_ui/config.py), opened through firmware's device factory
(firmware/devices.py): the PN532 reader (`reader`), the receipt printer
(`printer`), the camera (`camera`); spoken prompts (`voice`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from firmware.agent import Agent
from firmware.clerk_pins import PinLockout
from firmware.config import AgentConfig
from firmware.counter import Cart, Identity
from firmware.devices import DeviceFactory
from firmware.voice import CommandPlayer, RecordingPlayer, Voice
from protocols.clock import wall_ms as now_ms
from terminal_ui import views
from terminal_ui.config import Clerk, KioskSettings
from terminal_ui.errors import error_view
from terminal_ui.exports import LedgerExports
from terminal_ui.kiosk.buyer import BuyerIdentification
from terminal_ui.kiosk.cart import CartEditing
from terminal_ui.kiosk.checkout import Checkout
from terminal_ui.kiosk.clerk import ClerkSignIn
from terminal_ui.kiosk.prices import PriceList
from terminal_ui.kiosk.receipts import Receipts
from terminal_ui.kiosk.returns import PackagingReturns

log = logging.getLogger(__name__)


class Kiosk(ClerkSignIn, BuyerIdentification, CartEditing, Checkout, Receipts, PackagingReturns, PriceList):
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
        self._last_receipt = None                 # (receipt, seq) of the last one printed, for a reprint
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.reader = self.poller = self.camera = self.printer = None
        self.reader_state = "none"
        self.printer_state = "none" if not settings.printer else "unknown"
        cache = settings.voice_cache or config.ledger_path.with_name("voice-cache")
        player = CommandPlayer(settings.player) if settings.player else RecordingPlayer()
        self.voice = Voice(cache, player=player, enabled=settings.voice)
        self.last_status: dict = {}

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
                "cart": [views.line_view(self.counter, i, line) for i, line in enumerate(self.cart.lines)],
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

    def subject_panel(self, identity: Identity) -> dict:
        """Masked name, village, credit grade, remaining quota (views.subject_panel)."""
        return views.subject_panel(self.counter, self.agent.config_store, identity)

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

    # ------------------------------------------------------------------ ledger and voice

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
