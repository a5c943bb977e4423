"""PN532 commands and the card operations built on InDataExchange.

The reader owns the "is the PN532 ready" state: after the port is (re)opened it
sends the HSU wake-up, SAMConfiguration (mandatory after power-up: the chip starts
in LowVbat mode) and RFConfiguration with bounded passive-activation retries, so
InListPassiveTarget with no card returns NbTg=0 instead of waiting for ever (the
power-on default 0xFF means "retry until a card comes").
"""

import logging
import threading
import time

from protocols import pn532
from hardware.pn532.errors import CardError, ReaderDisconnected, ReaderTimeout
from hardware.pn532.link import Link
from hardware.pn532.port import Port

log = logging.getLogger(__name__)

NTAG_READ = 0x30
NTAG_WRITE = 0xA2
MIFARE_AUTH_A = 0x60
MIFARE_AUTH_B = 0x61
MIFARE_READ = 0x30
MIFARE_WRITE = 0xA0

DEFAULT_TIMEOUT = 1.0
EXCHANGE_TIMEOUT = 0.5
# One passive activation round per InListPassiveTarget keeps an empty poll to a
# few milliseconds on the PN532; the poller repeats it at its own interval.
PASSIVE_RETRIES = 0x01


class PN532:
    """A PN532 on a serial port URL. Every method is bounded by a timeout."""

    def __init__(self, url, baud=None, timeout=DEFAULT_TIMEOUT, passive_retries=PASSIVE_RETRIES,
                 ack_timeout=None, clock=time.monotonic):
        self.port = Port(url, baud)
        kwargs = {"clock": clock}
        if ack_timeout is not None:
            kwargs["ack_timeout"] = ack_timeout
        self.link = Link(self.port, **kwargs)
        self.timeout = timeout
        self.passive_retries = passive_retries
        self.clock = clock
        self.lock = self.link.lock
        self._ready_for = None  # port.opened count the PN532 was initialised for
        self._wait = threading.Event()

    # ------------------------------------------------------------ life cycle

    def open(self):
        with self.lock:
            self._ensure_ready()
        return self

    def close(self):
        with self.lock:
            self.port.close()

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def _ensure_ready(self):
        if not self.port.is_open:
            self.port.open()
        if self._ready_for != self.port.opened:
            self.link.call(pn532.SAM_CONFIGURATION, b"\x01\x14\x01", self.timeout, wake=True)
            self.link.call(pn532.RF_CONFIGURATION,
                           bytes([pn532.RF_MAX_RETRIES, 0xFF, 0x01, self.passive_retries]), self.timeout)
            self._ready_for = self.port.opened
            log.info("pn532 ready url=%s", self.port.url)

    def call(self, code, params=b"", timeout=None):
        """A raw command; (re)opens and initialises the reader first when needed."""
        with self.lock:
            self._ensure_ready()
            try:
                return self.link.call(code, params, timeout or self.timeout)
            except (ReaderDisconnected, ReaderTimeout):
                # A PN532 that stopped answering may have browned out and restarted in
                # LowVbat mode: initialise it again before the next command.
                self._ready_for = None
                raise

    # ------------------------------------------------------------ commands

    def firmware_version(self):
        return pn532.parse_firmware_version(self.call(pn532.GET_FIRMWARE_VERSION))

    def sam_configuration(self, mode=0x01, timeout=0x14, irq=0x01):
        self.call(pn532.SAM_CONFIGURATION, bytes([mode, timeout, irq]))

    def set_max_retries(self, atr=0xFF, psl=0x01, passive=PASSIVE_RETRIES):
        self.call(pn532.RF_CONFIGURATION, bytes([pn532.RF_MAX_RETRIES, atr, psl, passive]))
        self.passive_retries = passive

    def list_target(self, timeout=None):
        """The card in the field (106 kbps type A), or None."""
        answer = self.call(pn532.IN_LIST_PASSIVE_TARGET, bytes([1, pn532.BRTY_106A]), timeout)
        try:
            targets = pn532.parse_targets_106a(answer)
        except ValueError as exc:
            raise CardError(None, "bad InListPassiveTarget answer: %s" % exc)
        return targets[0] if targets else None

    def wait_for_target(self, timeout, interval=0.05, stop=None):
        """Poll until a card is in the field or `timeout` passes; sleeps between polls."""
        deadline = self.clock() + timeout
        stop = stop or self._wait
        while True:
            target = self.list_target()
            if target is not None:
                return target
            remaining = deadline - self.clock()
            if remaining <= 0 or stop.wait(min(interval, remaining)):
                return None

    def exchange(self, target, data, timeout=EXCHANGE_TIMEOUT):
        """Card answer to `data` (InDataExchange); CardError when the status is not ok."""
        answer = self.call(pn532.IN_DATA_EXCHANGE, bytes([_tg(target)]) + bytes(data), timeout)
        if not answer:
            raise CardError(None, "empty InDataExchange answer")
        status = answer[0]
        if status & 0x3F:
            code = "pn532_auth_failed" if status & 0x3F == 0x14 else "pn532_card_error"
            raise CardError(status, "%s (status 0x%02X)" % (pn532.status_text(status), status), code)
        return answer[1:]

    def release(self, target=None):
        """InRelease: the card is deselected (all targets when target is None)."""
        tg = 0 if target is None else _tg(target)
        answer = self.call(pn532.IN_RELEASE, bytes([tg]))
        if answer and answer[0] & 0x3F:
            raise CardError(answer[0], "InRelease failed: %s" % pn532.status_text(answer[0]))

    # ------------------------------------------------------------ NTAG21x

    def ntag_read(self, target, page):
        """16 bytes: pages page..page+3 (READ rolls over past the last page)."""
        data = self.exchange(target, bytes([NTAG_READ, page]))
        if len(data) != 16:
            raise CardError(None, "NTAG READ %d returned %d bytes" % (page, len(data)))
        return data

    def ntag_write(self, target, page, data):
        if len(data) != 4:
            raise ValueError("an NTAG page is 4 bytes")
        self.exchange(target, bytes([NTAG_WRITE, page]) + bytes(data))

    # ------------------------------------------------------------ MIFARE Classic

    def classic_auth(self, target, block, key, key_b=False):
        """Authenticate the sector of `block`; the card drops out of the field state on failure.

        The UID sent is the last four bytes of the UID (the cascade-level 1 bytes do not
        count for 7-byte UID cards).
        """
        if len(key) != 6:
            raise ValueError("a MIFARE key is 6 bytes")
        cmd = MIFARE_AUTH_B if key_b else MIFARE_AUTH_A
        self.exchange(target, bytes([cmd, block]) + bytes(key) + target.uid[-4:])

    def classic_read(self, target, block):
        data = self.exchange(target, bytes([MIFARE_READ, block]))
        if len(data) != 16:
            raise CardError(None, "MIFARE READ %d returned %d bytes" % (block, len(data)))
        return data

    def classic_write(self, target, block, data):
        if len(data) != 16:
            raise ValueError("a MIFARE block is 16 bytes")
        self.exchange(target, bytes([MIFARE_WRITE, block]) + bytes(data))


def _tg(target):
    return target if isinstance(target, int) else target.tg
