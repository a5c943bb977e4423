"""Clerk PINs: the scrypt hash a `[[kiosk.clerks]]` entry holds, its check,
and the lock-out after wrong PINs. A firmware service (not the kiosk UI's own)
because `python -m firmware kiosk-pin` makes the entries on the terminal, and
firmware never imports terminal_ui (ARCHITECTURE.md, import rules)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Callable

from protocols.clock import wall_ms as now_ms

log = logging.getLogger(__name__)

#
# A PIN is short: whoever reads the config file can try every 4-digit PIN in
# seconds against a fast hash, so each is stored as scrypt (memory-hard: 32 MiB
# a try) with a random 16-byte salt, self-describing, as the gateway stores
# passwords (gateway/store/users.py): `scrypt$N$r$p$<salt b64>$<hash b64>`. The clerk
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
