"""The PN532 on a serial port URL, for the Pi: the exchange, the commands and the
"is the PN532 ready" rule are `protocols.pn532host.Reader`'s (shared with the
MicroPython terminal); this adds what a threaded host with a writer needs: a
lock, so the poller thread and a card write never interleave frames, open and
close, a stoppable wait for a card, and the write commands.
"""

import logging
import threading
import time

from protocols import pn532
from protocols.pn532host import MIFARE_WRITE, NTAG_WRITE, PASSIVE_RETRIES, TIMEOUT, CardError, Reader
from hardware.pn532.port import Port

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = TIMEOUT


class PN532(Reader):
    """A PN532 on a serial port URL. Every method is bounded by a timeout."""

    def __init__(self, url, baud=None, timeout=DEFAULT_TIMEOUT, passive_retries=PASSIVE_RETRIES,
                 ack_timeout=None, clock=time.monotonic):
        kwargs = {} if ack_timeout is None else {"ack_timeout": ack_timeout}
        Reader.__init__(self, Port(url, baud), clock, timeout, passive_retries, log=log.info, **kwargs)
        self.lock = threading.RLock()
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

    def call(self, code, params=b"", timeout=None):
        with self.lock:
            return Reader.call(self, code, params, timeout)

    # ------------------------------------------------------------ commands

    def sam_configuration(self, mode=0x01, timeout=0x14, irq=0x01):
        self.call(pn532.SAM_CONFIGURATION, bytes([mode, timeout, irq]))

    def set_max_retries(self, atr=0xFF, psl=0x01, passive=PASSIVE_RETRIES):
        self.call(pn532.RF_CONFIGURATION, bytes([pn532.RF_MAX_RETRIES, atr, psl, passive]))
        self.passive_retries = passive

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

    def release(self, target=None):
        """InRelease: the card is deselected (all targets when target is None)."""
        tg = 0 if target is None else (target if isinstance(target, int) else target.tg)
        answer = self.call(pn532.IN_RELEASE, bytes([tg]))
        if answer and answer[0] & 0x3F:
            raise CardError(answer[0], "InRelease failed: %s" % pn532.status_text(answer[0]))

    def ntag_write(self, target, page, data):
        if len(data) != 4:
            raise ValueError("an NTAG page is 4 bytes")
        self.exchange(target, bytes([NTAG_WRITE, page]) + bytes(data))

    def classic_write(self, target, block, data):
        if len(data) != 16:
            raise ValueError("a MIFARE block is 16 bytes")
        self.exchange(target, bytes([MIFARE_WRITE, block]) + bytes(data))
