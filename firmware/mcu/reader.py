"""The PN532 on the board's UART. The exchange and its recovery (timeouts,
NACK, resync, replug), the commands and the card reads are the Pi driver's,
from protocols/pn532host.py; this brings the board's line (board.py's uart)
and clock, and the terminal's wait for a tap.
"""

import time

from protocols import pn532host

TIMEOUT_MS = 1000
EXCHANGE_TIMEOUT_MS = 500
ACK_TIMEOUT_MS = 100
LINE_QUIET_MS = 50


class Clock:
    """Milliseconds that never wrap, for the shared link's plain arithmetic:
    ticks_ms wraps (every 2**30 ms, 12.4 days, on the ports here), and a
    terminal runs for months."""

    def __init__(self):
        self._last = time.ticks_ms()
        self._ms = 0

    def __call__(self):
        now = time.ticks_ms()
        self._ms += time.ticks_diff(now, self._last)
        self._last = now
        return self._ms


class Reader(pn532host.Reader):
    def __init__(self, uart):
        pn532host.Reader.__init__(self, uart, Clock(), TIMEOUT_MS, ack_timeout=ACK_TIMEOUT_MS,
                                  exchange_timeout=EXCHANGE_TIMEOUT_MS, line_quiet=LINE_QUIET_MS)

    def wait_for_target(self, timeout_ms, interval_ms=50):
        """Poll until a card is on the field or the time is up (None). A reader
        error on the way (unplugged, mute) is retried until the deadline: the
        farmer is still holding the card while the clerk replugs the reader."""
        deadline = self.clock() + timeout_ms
        error = None
        while True:
            try:
                target = self.list_target()
                if target is not None:
                    return target
            except pn532host.ReaderError as err:
                error = err
            left = deadline - self.clock()
            if left <= 0:
                if error is not None:
                    raise error
                return None
            time.sleep_ms(min(interval_ms, left))
