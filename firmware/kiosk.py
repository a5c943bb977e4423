"""The counter session behind the clerk's kiosk UI: the one object terminal_ui
talks to (its public service API), wrapping the agent's `Counter` with what a
busy counter needs around a sale.

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
TOML (see `load`): the PN532 reader (`reader`), the receipt printer
(`printer`), the camera (`camera`); spoken prompts (`voice`).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import logging
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from firmware import ledger_pdf as _ledger_pdf
from firmware import receipt as _receipt
from firmware.agent import Agent
from firmware.config import AgentConfig, ConfigError, parse
from firmware.counter import Cart, CounterError, Identity, Outcome
from firmware.ledger import LedgerError
from firmware.voice import CommandPlayer, RecordingPlayer, Voice
from protocols import card as _card, catalogue as _catalogue, labelcode, policy, reasons
from protocols.clock import wall_ms as now_ms

log = logging.getLogger(__name__)

reasons.register({
    "clerk_pin_wrong": ("PIN 不正确", "Wrong PIN"),
    "clerk_locked": ("PIN 错误次数过多，请稍后再试", "Too many wrong PINs: try again later"),
    "clerk_required": ("请店员先登录", "A clerk must sign in first"),
    "subject_required": ("请先刷卡识别购买主体", "Identify the buyer first: tap the card"),
    "cart_line_missing": ("购物清单中没有这一行", "No such cart line"),
    "kiosk_busy": ("正在处理上一笔，请稍候", "Still working on the previous step"),
    "return_empty": ("还没有扫描回收的包装", "No returned containers scanned yet"),
    "return_duplicate": ("该包装已扫描", "This container was already scanned"),
    "return_code_required": ("回收包装须扫描标签上的二维码", "Scan the QR code on the returned container's label"),
    "nothing_to_void": ("没有可作废的销售", "No sale to void"),
})

# What the clerk can do, in plain words (policy.ACTIONS and labelcode.ACTIONS names).
ACTION_TEXT = {
    "refuse_sale": ("不能销售给该主体，请向购买人说明原因", "Do not sell to this buyer; explain why"),
    "add_items": ("请先扫描商品", "Scan products first"),
    "remove_item": ("请从清单中移除该商品", "Remove this product from the cart"),
    "refer_designated_shop": ("请购买人到定点经营门店购买", "Refer the buyer to a designated shop"),
    "rescan": ("请重新扫码", "Scan again"),
    "choose_by_hand": ("请在目录中手工选择产品", "Choose the product from the catalogue"),
    "fix_quantity": ("请改正数量", "Correct the quantity"),
    "identify": ("请刷主体信息卡或刷脸", "Tap the subject card or use the face check"),
    "ask_card": ("请购买人刷主体信息卡", "Ask for the subject card"),
    "ask_face": ("请购买人看摄像头完成刷脸核验", "Ask the buyer to look at the camera"),
    "retry_online": ("请等网络恢复后再售，或移除该商品", "Wait for the network, or remove this product"),
    "reduce_quantity": ("请减少数量", "Reduce the quantity"),
}

SCREENS = ("signin", "idle", "sale", "deciding", "result", "return")


def action_text(action: str | None, lang: str = "zh") -> str:
    texts = ACTION_TEXT.get(action or "")
    if not texts:
        return ""
    return texts[1] if lang == "en" else texts[0]


def pin_hash(clerk: str, pin: str) -> str:
    """What `[[kiosk.clerks]] pin_sha256` holds. A 4-6 digit PIN hash can be
    brute-forced by whoever reads the config file, so the file is root-only
    (firmware/deploy/README.md); the hash only keeps PINs off screens and logs."""
    return hashlib.sha256(("agri-kiosk-pin:%s:%s" % (clerk, pin)).encode("utf-8")).hexdigest()


@dataclass
class Clerk:
    id: str
    name: str
    pin_sha256: str


@dataclass
class KioskSettings:
    shop_name: str = ""
    reader: str | None = None            # PN532 port URL
    printer: str | None = None           # ESC/POS printer URL
    printer_columns: int = 32            # 58 mm paper; 48 for 80 mm
    camera: str | None = None            # camera URL (file:// stills for the twin)
    voice: bool = True
    voice_cache: Path | None = None
    player: tuple[str, ...] = ("aplay", "-q")   # empty: the recording twin
    clerks: list[Clerk] = field(default_factory=list)
    deposit_fen: int = 50                # paid back per returned pesticide container
    http: str = "127.0.0.1:8080"
    lock_after: int = 5                  # wrong PINs in a row before a lock-out
    lock_seconds: float = 30.0


def _settings(table: dict, base: Path, source: Path | None) -> KioskSettings:
    where = "kiosk"

    def get(key, kind, default):
        if key not in table:
            return default
        value = table[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise ConfigError(f"{where}.{key} must be {kind.__name__}, got {value!r}")
        return value

    clerks = []
    for i, entry in enumerate(get("clerks", list, [])):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("id", "pin_sha256")):
            raise ConfigError(f"{where}.clerks[{i}] needs id and pin_sha256 (strings)")
        if not (0 < len(entry["id"]) <= 64) or len(entry["pin_sha256"]) != 64:
            raise ConfigError(f"{where}.clerks[{i}]: id 1-64 characters, pin_sha256 64 hex digits")
        clerks.append(Clerk(entry["id"], entry.get("name") or entry["id"], entry["pin_sha256"].lower()))
    cache = get("voice_cache", str, None)
    columns = get("printer_columns", int, 32)
    if columns not in (32, 42, 48):
        raise ConfigError(f"{where}.printer_columns must be 32 (58 mm), 42 or 48 (80 mm)")
    return KioskSettings(
        shop_name=get("shop_name", str, ""),
        reader=get("reader", str, None), printer=get("printer", str, None), printer_columns=columns,
        camera=get("camera", str, None), voice=get("voice", bool, True),
        voice_cache=(base / cache) if cache else None,
        player=tuple(get("player", list, ["aplay", "-q"])), clerks=clerks,
        deposit_fen=get("deposit_fen", int, 50), http=get("http", str, "127.0.0.1:8080"))


def load(path: str | Path) -> tuple[AgentConfig, KioskSettings]:
    """The agent's TOML with its `[kiosk]` table, each validated with the key named:

        [kiosk]
        shop_name = "塘栖农资店"
        reader = "/dev/ttyAMA0"                   # PN532 (hardware/README.md)
        printer = "serial:///dev/ttyUSB0?baud=9600"
        camera = "v4l2://0"
        voice = true
        player = ["aplay", "-q"]                  # [] records prompts instead of playing
        deposit_fen = 50
        http = "127.0.0.1:8080"
        [[kiosk.clerks]]
        id = "c1"
        name = "李梅"
        pin_sha256 = "…"                          # python -m firmware kiosk-pin c1
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: {err}") from None
    try:
        return parse(data, path.parent, path), _settings(data.get("kiosk") or {}, path.parent, path)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


class KioskError(reasons.ReasonError):
    """A step the clerk asked for that cannot be done now; `code` says why."""


def _error_of(exc: Exception) -> dict:
    code = getattr(exc, "code", None) or "internal_error"
    return {"code": code, "zh": reasons.text(code, "zh"), "en": reasons.text(code, "en"),
            "action": policy.ACTIONS.get(code) or labelcode.ACTIONS.get(code)}


class Kiosk:
    def __init__(self, config: AgentConfig, settings: KioskSettings, agent: Agent | None = None,
                 wall_ms: Callable[[], int] = now_ms, monotonic=time.monotonic):
        self.config = config
        self.settings = settings
        self.wall_ms = wall_ms
        self._monotonic = monotonic
        self.agent = agent or Agent(config, wall_ms=wall_ms)
        self.counter = self.agent.counter
        self._lock = threading.RLock()
        self._listeners: list[Callable[[dict], None]] = []
        self._version = 0
        self.boot = wall_ms()     # a restarted agent starts its versions again
        self.clerk: Clerk | None = None
        self._wrong_pins = 0
        self._locked_until = 0.0
        self._reset_session()
        self.screen = "signin"
        self.message: dict | None = None
        self._sold_codes: dict[str, int] = {}     # label unit code -> seq of the sale it left in
        self._pdf_lock = threading.Lock()         # one PDF export at a time: it is CPU work on a Pi
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
            from hardware.printer import Printer
            self.printer = Printer(self.settings.printer, columns=self.settings.printer_columns)
        if self.settings.reader:
            self._start_reader(self.settings.reader)
        if self.settings.camera:
            try:
                from hardware.camera import open_camera
                self.camera = open_camera(self.settings.camera)
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
        from hardware.pn532 import cards
        from hardware.pn532.poller import PRESENT, READER_ERROR, READER_OK, REMOVED, CardPoller
        from hardware.pn532.reader import PN532

        self.reader = PN532(url, timeout=0.5)

        def read(reader, target):
            return cards.read_payload(reader, target)

        self.poller = CardPoller(self.reader, interval=0.05, on_present=read).start()
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

    def add_listener(self, fn: Callable[[dict], None]) -> None:
        with self._lock:
            self._listeners.append(fn)

    def remove_listener(self, fn) -> None:
        with self._lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    def _changed(self) -> None:
        with self._lock:
            self._version += 1
            snap = self.snapshot()
            listeners = list(self._listeners)
        for fn in listeners:
            try:
                fn(snap)
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

    def snapshot(self) -> dict:
        """Everything the screen shows, as JSON."""
        with self._lock:
            return {
                "boot": self.boot,
                "version": self._version,
                "screen": self.screen,
                "clerk": {"id": self.clerk.id, "name": self.clerk.name} if self.clerk else None,
                "subject": self.subject_view,
                "cart": [self._line_view(i, line) for i, line in enumerate(self.cart.lines)],
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
        return _catalogue.pack(self.counter.index().data, product, spec)

    def _line_view(self, index: int, line) -> dict:
        prod, pack = self._product(line.product, line.spec)
        date = self.counter.today()
        status = _catalogue.status_on(self.counter.index().data, prod, date)["status"] if prod else None
        return {"index": index, "product": line.product, "spec": line.spec, "packs": line.packs, "code": line.code,
                "name": prod["name"] if prod else line.product, "status": status,
                "pack": _receipt.amount_text(pack["net"], pack["unit"]) if pack else ""}

    def _message(self, exc: Exception | None = None, **extra) -> None:
        self.message = dict(_error_of(exc), **extra) if exc is not None else (extra or None)

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

    def sign_in(self, pin: str) -> Clerk:
        now = self._monotonic()
        with self._lock:
            if now < self._locked_until:
                raise KioskError("clerk_locked", "%.0fs left" % (self._locked_until - now))
            for clerk in self.settings.clerks:
                if hmac.compare_digest(pin_hash(clerk.id, str(pin)), clerk.pin_sha256):
                    self.clerk = clerk
                    self._wrong_pins = 0
                    self._reset_session()
                    self.screen = "idle"
                    self.message = None
                    break
            else:
                self._wrong_pins += 1
                if self._wrong_pins >= self.settings.lock_after:
                    self._locked_until = now + self.settings.lock_seconds
                    self._wrong_pins = 0
                log.warning("kiosk sign-in refused terminal=%s", self.config.terminal)
                raise KioskError("clerk_pin_wrong")
        log.info("clerk signed in terminal=%s clerk=%s", self.config.terminal, self.clerk.id)
        self.voice.say("tap")
        self._changed()
        return self.clerk

    def sign_out(self) -> None:
        with self._lock:
            self._busy_check()
            self.clerk = None
            self._reset_session()
            self.screen = "signin"
            self.message = None
        self._changed()

    def _need_clerk(self) -> Clerk:
        if self.clerk is None:
            raise KioskError("clerk_required")
        return self.clerk

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

    def face_check(self, product_class: str = "normal") -> dict:
        """The buyer looks at the camera: frames matched against the shop's face
        gallery as last synced (`Counter.identify_by_face`; a burst with the
        liveness check when the product class needs it). With a card already
        tapped it confirms the holder (card+face). Returns what the page shows
        next to its face button: `{"identified": true, "subject", "method"}`,
        or `{"identified": false, "code", "zh", "en", "action"}` (no match, too
        dark, not live...), which is also the session's message."""
        self._need_clerk()
        if self.camera is None:
            raise KioskError("camera_unavailable")
        live = self.agent.face.policy.required_for(product_class)
        frames = [f.image for f in self.camera.burst(6 if live else 1, timeout=3.0)]
        if not frames:
            raise KioskError("camera_unavailable", "no frame in 3 s")
        with self._lock:
            card = self.identity if self.identity is not None and self.identity.card else None
        try:
            identity = self.counter.identify_by_face(frames, product_class, with_card=card)
        except CounterError as exc:
            log.info("face refused terminal=%s code=%s", self.config.terminal, exc.code)
            with self._lock:
                self._message(exc)
                refused = dict(self.message, identified=False)
            self.voice.say("refused", exc.code)
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
        """A subject identified (card, face): the sale screen with its panel."""
        with self._lock:
            self.card_present = identity.card is not None
            if self.clerk is None:
                self._message(KioskError("clerk_required"))
            elif self.screen in ("deciding",):
                return
            elif self.screen == "return" and self.identity and self.identity.subject != identity.subject:
                self._message(KioskError("kiosk_busy"))
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
        self._changed()

    def subject_panel(self, identity: Identity) -> dict:
        """Masked name, village, credit grade, remaining quota per category: what
        the clerk needs to serve the buyer, nothing more. Village name and grade
        come with the synced registry entry (docs/protocol.md "Configuration
        sync"); `grade` is None when the gateway sent none ("not rated")."""
        store = self.agent.config_store
        entry = store.subject(identity.subject) or {}
        params = store.params()
        bars = []
        if params and entry:
            try:
                balance = policy.balance(entry, store.used(identity.subject), params, self.counter.today())
            except policy.PolicyError as exc:
                log.warning("balance failed subject=%s: %s", identity.subject, exc)
                balance = {}
            for category, b in sorted(balance.items()):
                if not b["enforced"] or b["allowance"] <= 0:
                    continue
                unit = _receipt.category_unit(category, params)
                bars.append({
                    "category": category, "zh": _receipt.category_name(category, "zh"),
                    "en": _receipt.category_name(category, "en"), "period": b["period"],
                    "allowance": b["allowance"], "used": b["used"], "remaining": b["remaining"],
                    "remaining_text": _receipt.amount_text(b["remaining"], unit),
                    "allowance_text": _receipt.amount_text(b["allowance"], unit),
                    "pct": max(0, min(100, b["remaining"] * 100 // b["allowance"])),
                })
        return {
            "id": identity.subject, "method": identity.method, "card": bool(identity.card),
            "name": _receipt.mask_name(entry.get("name")), "known": bool(entry),
            "town": entry.get("town"), "village": entry.get("village"), "village_name": entry.get("village_name"),
            "grade": entry.get("grade") if entry.get("grade") in ("A", "B", "C") else None,
            "status": entry.get("status"), "quota": bars,
        }

    # ------------------------------------------------------------------ cart

    def _need_sale(self) -> Identity:
        self._need_clerk()
        if self.identity is None:
            raise KioskError("subject_required")
        self._busy_check()
        if self.screen == "result":       # a new cart after a finished sale: same buyer
            self.cart = Cart()
            self.outcome = None
            self.receipt_state = None
            self.screen = "sale"
        return self.identity

    def scan(self, text: str, packs: int = 1) -> dict:
        with self._lock:
            try:
                self._need_sale()
                if self.screen == "return":
                    return self.scan_return(text)
                line = self.counter.scan(self.cart, text, packs)
                self.message = None
            except (KioskError, CounterError, labelcode.LabelError) as exc:
                self._message(exc)
                self._changed()
                raise
        self._changed()
        return {"product": line.product, "spec": line.spec, "packs": line.packs}

    def add(self, product: str, spec: str, packs: int = 1) -> None:
        with self._lock:
            try:
                self._need_sale()
                self.counter.add(self.cart, product, spec, packs)
                self.message = None
            except (KioskError, CounterError) as exc:
                self._message(exc)
                self._changed()
                raise
        self._changed()

    def set_packs(self, index: int, packs: int) -> None:
        with self._lock:
            self._need_sale()
            if not 0 <= index < len(self.cart.lines):
                raise KioskError("cart_line_missing", str(index))
            if not isinstance(packs, int) or isinstance(packs, bool) or not 1 <= packs <= 100000:
                raise CounterError("quantity_invalid", repr(packs))
            self.cart.lines[index].packs = packs
        self._changed()

    def remove(self, index: int) -> None:
        with self._lock:
            self._need_sale()
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
                            "pack": _receipt.amount_text(packs[spec]["net"], packs[spec]["unit"]), "status": status})
                if len(out) >= limit:
                    return out
        return out

    # ------------------------------------------------------------------ deciding

    def checkout(self) -> dict:
        """Decide, commit, then show. The screen shows "deciding" meanwhile and
        the outcome only once `Counter.checkout` returned, i.e. after the commit."""
        with self._lock:
            identity = self._need_sale()
            if self.screen == "return":
                raise KioskError("kiosk_busy")
            if not self.cart.lines:
                raise CounterError("cart_empty")
            clerk = self.clerk.id
            cart = Cart([type(l)(l.product, l.spec, l.packs, l.code) for l in self.cart.lines])
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

    def _outcome_view(self, outcome: Outcome, cart: Cart) -> dict:
        items = []
        for line, verdict in zip(cart.lines, outcome.items):
            prod, pack = self._product(line.product, line.spec)
            codes = verdict.get("reasons") or []
            items.append({
                "product": line.product, "spec": line.spec, "packs": line.packs,
                "name": prod["name"] if prod else line.product,
                "pack": _receipt.amount_text(pack["net"], pack["unit"]) if pack else "",
                "decision": verdict["decision"],
                "reasons": [{"code": c, "zh": reasons.text(c, "zh"), "en": reasons.text(c, "en")} for c in codes],
                "action": verdict.get("action"),
                "action_zh": action_text(verdict.get("action"), "zh"),
                "action_en": action_text(verdict.get("action"), "en"),
                "max_packs": verdict.get("max_packs"),
            })
        return {
            "approved": outcome.approved, "decision": outcome.decision, "mode": outcome.mode,
            "record": outcome.record, "seq": outcome.seq, "record_id": _receipt.record_id(self.config.terminal, outcome.seq),
            "sale_id": outcome.sale_id, "auth": outcome.auth, "items": items,
            "codes": outcome.codes, "action": outcome.action,
            "action_zh": action_text(outcome.action, "zh"), "action_en": action_text(outcome.action, "en"),
            "voided": False,
        }

    def void(self, reason: str = "clerk_void") -> dict:
        """Void the sale on screen (a void record; the quota is given back)."""
        with self._lock:
            self._need_clerk()
            if not self.outcome or not self.outcome["approved"] or self.outcome["voided"]:
                raise KioskError("nothing_to_void")
            stored = self.counter.void(self.outcome["seq"], reason, clerk=self.clerk.id)
            self.outcome = dict(self.outcome, voided=True, void_seq=stored.seq)
            if self.identity:
                self.subject_view = self.subject_panel(self.identity)
        self._changed()
        return self.outcome

    def finish(self) -> None:
        """Next customer: back to the idle screen, and remind the farmer of the card."""
        with self._lock:
            self._need_clerk()
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
        for line, verdict in zip(cart.lines, outcome.items):
            prod, pack = self._product(line.product, line.spec)
            approved = verdict["decision"] == policy.APPROVE
            items.append(_receipt.ReceiptItem(
                prod["name"] if prod else line.product, line.packs,
                _receipt.amount_text(pack["net"], pack["unit"]) + "/件" if pack else "",
                approved, "" if approved else "；".join(reasons.text(c) for c in verdict.get("reasons") or [])))
        remaining = [(_receipt.category_name(c), _receipt.amount_text(v, _receipt.category_unit(c, params)))
                     for c, v in sorted((outcome.remaining or {}).items())
                     if c in (outcome.consumption or {})]
        doc = _receipt.SaleReceipt(
            shop=self.settings.shop_name or self.config.shop, terminal=self.config.terminal, seq=outcome.seq,
            time_ms=self.wall_ms(), clerk=self.clerk.name if self.clerk else "", subject_name=(self.subject_view or {}).get("name", "—"),
            subject_id=identity.subject, items=items, mode=outcome.mode, remaining=remaining)
        self._print(doc, outcome.seq)

    def _print(self, doc: _receipt.SaleReceipt, seq: int) -> None:
        data = _receipt.render(doc, self.settings.printer_columns)
        with self._lock:
            self.receipt_state = {"seq": seq, "state": "printing"}

        def job():
            from hardware.printer import PrinterError
            try:
                self.printer.print(data)
                state = {"seq": seq, "state": "printed"}
                self.printer_state = "ok"
            except PrinterError as exc:
                log.warning("receipt not printed seq=%d: %s", seq, exc)
                state = dict({"seq": seq, "state": "failed"}, **_error_of(exc))
                self.printer_state = "error"
            with self._lock:
                if self.receipt_state and self.receipt_state.get("seq") == seq:
                    self.receipt_state = state
            self._changed()

        self._spawn(job, "receipt-%d" % seq)
        self._last_receipt = (doc, seq)

    def reprint(self) -> None:
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

    def start_return(self) -> None:
        with self._lock:
            self._need_sale()
            self.cart = Cart()
            self.outcome = None
            self.returned = []
            self.screen = "return"
            self.message = None
        self._changed()

    def scan_return(self, text: str) -> dict:
        with self._lock:
            self._need_clerk()
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

    def cancel_return(self) -> None:
        with self._lock:
            self.returned = []
            self.screen = "sale" if self.identity else "idle"
        self._changed()

    def commit_return(self) -> dict:
        with self._lock:
            clerk = self._need_clerk()
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
        ledger = self.agent.ledger
        head = ledger.head
        top = min(head, before - 1) if before else head
        after = max(0, top - limit)
        rows = [self._row_view(json.loads(text)) for _, text in ledger.pending(after, top - after)]
        rows.reverse()
        return {"rows": rows, "head": head, "acked": ledger.acked, "next": after if after > 0 else None}

    def _row_view(self, record: dict) -> dict:
        body = record["body"]
        items = []
        for item in body.get("items") or []:
            prod, pack = self._product(item["product"], item.get("spec") or "")
            items.append("%s x%d%s" % (prod["name"] if prod else item["product"], item["packs"],
                                      "" if item.get("decision", "approve") == "approve" else "（拒）"))
        if record["type"] == "return":
            items.append("回收包装 x%d，%s" % (len(body.get("codes") or []), _receipt.yuan(body.get("deposit_fen") or 0)))
        return {
            "seq": record["seq"], "time": _receipt.time_text(record["time"]), "time_ms": record["time"],
            "type": record["type"], "mode": body.get("mode"), "subject": body.get("subject"),
            "clerk": body.get("clerk"), "items": items, "reasons": body.get("reasons") or [],
            "links": body.get("links") or [], "codes": body.get("codes") or [],
            "deposit_fen": body.get("deposit_fen"), "voids": body.get("voids"),
            "uploaded": record["seq"] <= self.agent.ledger.acked,
        }

    CSV_COLUMNS = ("seq", "time", "type", "mode", "subject", "clerk", "items", "reasons", "voids", "links",
                   "codes", "deposit_fen", "uploaded")

    def ledger_csv(self):
        """The whole ledger as CSV lines (UTF-8 with BOM so Excel opens the Chinese
        right), produced row by row: a two-year ledger never sits in memory."""
        yield "\ufeff"
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(self.CSV_COLUMNS)
        yield buf.getvalue()
        after = 0
        while True:
            chunk = self.agent.ledger.pending(after, 500)
            if not chunk:
                return
            buf = io.StringIO()
            writer = csv.writer(buf)
            for seq, text in chunk:
                row = self._row_view(json.loads(text))
                writer.writerow([row["seq"], row["time"], row["type"], row["mode"] or "", row["subject"] or "",
                                 row["clerk"] or "", "；".join(row["items"]), " ".join(row["reasons"]),
                                 row["voids"] or "", " ".join(map(str, row["links"])), " ".join(row["codes"]),
                                 row["deposit_fen"] if row["deposit_fen"] is not None else "",
                                 "yes" if row["uploaded"] else "no"])
                after = seq
            yield buf.getvalue()

    def ledger_pdf(self) -> bytes:
        """The ledger as a PDF for an inspector (firmware/ledger_pdf.py): the
        CSV's rows, read 500 at a time, up to the head at the moment of the
        request, so the range in the title and the table agree while sales go on.
        A second export while one is being built is refused, not queued."""
        if not self._pdf_lock.acquire(blocking=False):
            raise _ledger_pdf.LedgerPdfError("ledger_pdf_busy")
        try:
            ledger = self.agent.ledger
            last = ledger.head
            first = ledger.pending(0, 1)
            first_seq = first[0][0] if first and first[0][0] <= last else None
            header = _ledger_pdf.Header(
                shop_name=self.settings.shop_name, shop=self.config.shop, terminal=self.config.terminal,
                exported_ms=self.wall_ms(), first_seq=first_seq, last_seq=last if first_seq else None)
            return _ledger_pdf.render(header, self._ledger_views(last))
        finally:
            self._pdf_lock.release()

    def _ledger_views(self, upto: int):
        """Row views of seq 1..upto in order, one chunk of 500 in memory at a time."""
        after = 0
        while after < upto:
            chunk = self.agent.ledger.pending(after, 500)
            if not chunk:
                return
            for seq, text in chunk:
                if seq > upto:
                    return
                yield self._row_view(json.loads(text))
                after = seq

    def set_voice(self, on: bool) -> None:
        self.voice.set_enabled(on)
        self._changed()

    @staticmethod
    def error_view(exc: Exception) -> dict:
        return _error_of(exc)

