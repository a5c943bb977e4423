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

import base64
import binascii
import csv
import hashlib
import hmac
import io
import ipaddress
import json
import logging
import os
import secrets
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
from firmware.face import retry as _face_retry
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
    "buyer_changed": ("换了一张卡：购物清单保留给新的购买人，还是先为当前购买人结算？",
                      "Another card: keep the cart for the new buyer, or finish the current sale first?"),
    "buyer_choice_pending": ("请先选择：购物清单给新的购买人，还是先为当前购买人结算",
                             "Choose first: the cart for the new buyer, or finish the current sale"),
    "no_pending_buyer": ("没有待确认的新购买人", "No other buyer is waiting"),
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


# ---------------------------------------------------------------------- clerk PINs
#
# A PIN is short: whoever reads the config file can try every 4-digit PIN in
# seconds against a fast hash, so each is stored as scrypt (memory-hard: 32 MiB
# a try) with a random 16-byte salt, self-describing, as the gateway stores
# passwords (gateway/users.py): `scrypt$N$r$p$<salt b64>$<hash b64>`. The clerk
# id is hashed with the PIN, so a line copied under another clerk's id does not
# sign that clerk in. N = 2**15, r = 8, p = 1: about 0.1 s on the dev box (one
# core of a shared 2-core EPYC) and, by the usual factor of four, about half a
# second on a Raspberry Pi 4 per clerk tried; docs/security.md "Kiosk" has the
# figures. Entries are refused below N = 2**14 (the gateway's login cost) and
# above 128 MiB (a Pi 4 with 1 GB must still sign in).

PIN_N, PIN_R, PIN_P = 2 ** 15, 8, 1
PIN_MIN_N = 2 ** 14
PIN_MAX_MEMORY = 128 * 1024 * 1024


class PinHashError(ValueError):
    """A `pin_hash` string that is not one this kiosk accepts."""


def pin_hash(clerk: str, pin: str, n: int = PIN_N, r: int = PIN_R, p: int = PIN_P,
             salt: bytes | None = None) -> str:
    """What `[[kiosk.clerks]] pin_hash` holds (`python -m firmware kiosk-pin`)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    derived = _scrypt(clerk, pin, salt, n, r, p)
    return "scrypt$%d$%d$%d$%s$%s" % (n, r, p, base64.b64encode(salt).decode(), base64.b64encode(derived).decode())


def _scrypt(clerk: str, pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(("agri-kiosk-pin:%s:%s" % (clerk, pin)).encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          dklen=32, maxmem=PIN_MAX_MEMORY + 2 * 1024 * 1024)


def parse_pin_hash(text: str) -> tuple[int, int, int, bytes, bytes]:
    """(n, r, p, salt, hash) of a `scrypt$…` string, or PinHashError saying
    what is wrong with it."""
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise PinHashError("must be scrypt$N$r$p$salt$hash (python -m firmware kiosk-pin)")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        raise PinHashError("N, r, p must be numbers, salt and hash base64") from None
    if n < PIN_MIN_N or n & (n - 1):
        raise PinHashError(f"N must be a power of two, at least {PIN_MIN_N}")
    if not (1 <= r <= 32 and 1 <= p <= 16) or 128 * n * r > PIN_MAX_MEMORY:
        raise PinHashError("r 1-32, p 1-16, and 128*N*r at most 128 MiB")
    if len(salt) < 16 or len(digest) != 32:
        raise PinHashError("salt at least 16 bytes, hash 32 bytes")
    return n, r, p, salt, digest


def check_pin(clerk: str, pin: str, stored: str) -> bool:
    try:
        n, r, p, salt, digest = parse_pin_hash(stored)
    except PinHashError:
        return False
    return hmac.compare_digest(_scrypt(clerk, pin, salt, n, r, p), digest)


class PinLockout:
    """Wrong PINs, counted for the whole kiosk (every client of the UI is on
    this machine: counting per client would let each new one start afresh).

    After `after` wrong PINs sign-in is locked for `seconds`, and every further
    lock is twice the last, up to `max_seconds`: 30 s, 60 s, 2 min ... 1 h with
    the defaults, so a 4-digit PIN takes months to find, not the 12 hours of a
    lock that never grew. While locked no PIN is checked, the right one
    included. The right PIN clears the count towards the next lock but not the
    level: someone guessing between a clerk's sign-ins climbs on. The level
    falls back after `forget_s` without a wrong PIN (a day by default).

    The state is a small JSON file (0600, written and fsynced before the wrong
    PIN is answered), so a restart of the kiosk, even kill -9, resets nothing.
    A lock is kept as its wall-clock end and its length: after a restart the
    rest of it applies, never more than its length (a Pi has no clock battery,
    and its clock can read early at boot until NTP corrects it)."""

    def __init__(self, path: Path, after: int = 5, seconds: float = 30.0, max_seconds: float = 3600.0,
                 forget_s: float = 86400.0, wall_ms: Callable[[], int] = now_ms, monotonic=time.monotonic):
        self.path = Path(path)
        self.after, self.seconds, self.max_seconds, self.forget_s = after, seconds, max_seconds, forget_s
        self.wall_ms, self.monotonic = wall_ms, monotonic
        self.failures = 0           # wrong PINs since the last lock (or the right PIN)
        self.level = 0              # locks in a row: the next lasts seconds * 2**level
        self.last_failure_ms = 0
        self._until = 0.0           # monotonic end of the lock in force
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text("utf-8"))
            self.failures, self.level = int(data["failures"]), int(data["level"])
            self.last_failure_ms = int(data["last_failure_ms"])
            until_ms, length = int(data["until_ms"]), float(data["length_s"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Written atomically, so only a hand or another program breaks it:
            # start locked for the shortest lock rather than open.
            log.error("kiosk PIN lock state unreadable path=%s: %s; locking sign-in for %.0f s",
                      self.path, exc, self.seconds)
            self.failures, self.level, self.last_failure_ms = 0, 1, self.wall_ms()
            self._until = self.monotonic() + self.seconds
            return
        left = min(max(0.0, (until_ms - self.wall_ms()) / 1000.0), length)
        if left > 0:
            self._until = self.monotonic() + left
            log.warning("kiosk PIN lock still in force after a restart: %.0f s left", left)

    def remaining(self) -> float:
        """Seconds until a PIN may be tried again (0: now)."""
        return max(0.0, self._until - self.monotonic())

    def failed(self) -> float:
        """Count a wrong PIN; the lock it starts, in seconds (0: none yet)."""
        now = self.wall_ms()
        if self.last_failure_ms and now - self.last_failure_ms > self.forget_s * 1000:
            self.failures = self.level = 0
        self.last_failure_ms = now
        self.failures += 1
        length = 0.0
        if self.failures >= self.after:
            length = min(self.max_seconds, self.seconds * 2 ** min(self.level, 30))
            self.level += 1
            self.failures = 0
            self._until = self.monotonic() + length
        self._save(now, length)
        return length

    def succeeded(self) -> None:
        if self.failures:
            self.failures = 0
            self._save(self.wall_ms(), 0.0)

    def _save(self, now: int, length: float) -> None:
        left = self.remaining()
        state = {"failures": self.failures, "level": self.level, "last_failure_ms": self.last_failure_ms,
                 "until_ms": now + int(left * 1000), "length_s": max(length, left)}
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(state).encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@dataclass
class Clerk:
    id: str
    name: str
    pin_hash: str               # scrypt$…; a 64-hex `pin_sha256` of old configs signs nobody in

    @property
    def legacy(self) -> bool:
        return not self.pin_hash.startswith("scrypt$")


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
    lock_after: int = 5                  # wrong PINs before a lock-out (PinLockout)
    lock_seconds: float = 30.0           # the first lock; each next one twice as long
    lock_max_seconds: float = 3600.0
    lock_forget_s: float = 86400.0       # a day without a wrong PIN: back to the first lock
    pin_state: Path | None = None        # the lock's file; default beside the ledger


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
        key = f"{where}.clerks[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not (0 < len(entry["id"]) <= 64):
            raise ConfigError(f"{key} needs id (a string of 1-64 characters) and pin_hash")
        if any(c.id == entry["id"] for c in clerks):
            raise ConfigError(f"{key}: clerk id {entry['id']!r} listed twice")
        name = entry.get("name") or entry["id"]
        if isinstance(entry.get("pin_hash"), str):
            try:
                parse_pin_hash(entry["pin_hash"])
            except PinHashError as err:
                raise ConfigError(f"{key}.pin_hash {err}") from None
            clerks.append(Clerk(entry["id"], name, entry["pin_hash"]))
        elif isinstance(entry.get("pin_sha256"), str):
            # The old fast hash: loaded so the owner is told, never used to sign
            # in (checking it would tell a guesser the PIN the owner is likely
            # to keep). The agent still starts: its uplink has sales to deliver.
            log.warning("%s: clerk %s has an old pin_sha256 entry and cannot sign in; replace it with the "
                        "pin_hash line of `python -m firmware kiosk-pin %s`", source or "kiosk config",
                        entry["id"], entry["id"])
            clerks.append(Clerk(entry["id"], name, "sha256$" + entry["pin_sha256"]))
        else:
            raise ConfigError(f"{key} needs id and pin_hash (python -m firmware kiosk-pin {entry['id']})")
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
        deposit_fen=get("deposit_fen", int, 50), http=_loopback(get("http", str, "127.0.0.1:8080"), f"{where}.http"))


def _loopback(address: str, key: str) -> str:
    """The kiosk UI is for this terminal's own screen: a loopback HOST:PORT."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]").lower()
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{key} must be a loopback HOST:PORT (127.0.0.1, [::1] or localhost), got {address!r}")
    return address


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
        pin_hash = "scrypt$32768$8$1$…$…"          # python -m firmware kiosk-pin c1
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


class ClerkLocked(KioskError):
    """Sign-in locked after wrong PINs; `retry_after` in whole seconds."""

    def __init__(self, seconds: float):
        self.retry_after = max(1, int(seconds + 0.999))
        super().__init__("clerk_locked", "%ds left" % self.retry_after)


def _error_of(exc: Exception) -> dict:
    code = getattr(exc, "code", None) or "internal_error"
    view = {"code": code, "zh": reasons.text(code, "zh"), "en": reasons.text(code, "en"),
            "action": policy.ACTIONS.get(code) or labelcode.ACTIONS.get(code)}
    if getattr(exc, "retry_after", None):
        view["retry_after"] = exc.retry_after
    return view


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
                "clerk": {"id": self.clerk.id, "name": self.clerk.name} if self.clerk else None,
                "subject": self.subject_view,
                "pending_buyer": self.pending_view,
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
                self.message = None
            except (KioskError, CounterError, labelcode.LabelError) as exc:
                self._message(exc)
                self._changed()
                raise
        self._changed()
        return {"product": line.product, "spec": line.spec, "packs": line.packs}

    def add(self, product: str, spec: str, packs: int = 1, session: str | None = None) -> None:
        with self._lock:
            try:
                self._need_sale(session)
                self.counter.add(self.cart, product, spec, packs)
                self.message = None
            except (KioskError, CounterError) as exc:
                self._message(exc)
                self._changed()
                raise
        self._changed()

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
                            "pack": _receipt.amount_text(packs[spec]["net"], packs[spec]["unit"]), "status": status})
                if len(out) >= limit:
                    return out
        return out

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

    def set_voice(self, on: bool, session: str | None = None) -> None:
        with self._lock:
            self._need_clerk(session)
        self.voice.set_enabled(on)
        self._changed()

    @staticmethod
    def error_view(exc: Exception) -> dict:
        return _error_of(exc)

