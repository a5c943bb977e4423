"""One PN532 command/response exchange over a port, with the manual's recovery rules.

The PN532 acknowledges every well-formed command frame with an ACK, then sends its
answer. This layer:
- waits for the ACK at most `ack_timeout`; without one it aborts whatever the PN532
  may be doing (an ACK from the host cancels the current command, manual 6.2.1.3),
  resends the command preceded by the HSU wake-up bytes (a module that browned out
  is asleep again), and gives up after `attempts` sends;
- resends the command when the PN532 answers with a NACK or a syntax-error frame;
- answers a response with a bad data checksum with a NACK, which makes the PN532
  send the same response again (at most `nack_limit` times);
- accepts an answer whose ACK was lost on the line;
- ignores late answers to earlier, cancelled commands;
- on the overall deadline cancels the command with an ACK and raises ReaderTimeout,
  so no call outlives its timeout and the PN532 is left idle for the next one;
  the next call first waits for the line to go quiet, so an answer that was already
  on its way cannot be taken for the answer to a new command with the same code.
"""

import logging
import threading
import time

from protocols import pn532
from hardware.pn532.errors import ReaderError, ReaderTimeout

log = logging.getLogger(__name__)

ACK_TIMEOUT = 0.1
# USB serial adapters (FTDI latency timer: 16 ms) can split a frame with a pause;
# a partial frame is only dropped as noise after the line has been quiet this long.
LINE_QUIET = 0.05


class _Retry(Exception):
    def __init__(self, error, cancel=False, wake=False):
        Exception.__init__(self, error)
        self.error = error
        self.cancel = cancel
        self.wake = wake


class Link:
    def __init__(self, port, ack_timeout=ACK_TIMEOUT, attempts=3, nack_limit=3, clock=time.monotonic):
        self.port = port
        self.ack_timeout = ack_timeout
        self.attempts = attempts
        self.nack_limit = nack_limit
        self.clock = clock
        self.lock = threading.RLock()
        self._decoder = pn532.Decoder()
        self._frames = []
        self._last_byte = 0.0
        self._cancelled = False

    def call(self, code, params=b"", timeout=1.0, wake=False):
        """Parameters of the PN532's answer to command `code`."""
        frame = pn532.command(code, params)
        deadline = self.clock() + timeout
        with self.lock:
            self._discard()
            prefix = pn532.WAKEUP if wake else b""
            error = None
            for attempt in range(1, self.attempts + 1):
                try:
                    return self._attempt(code, prefix + frame, deadline)
                except _Retry as retry:
                    error = retry.error
                    log.warning("pn532 retry command=0x%02X attempt=%d reason=%s", code, attempt, error)
                    if retry.cancel:
                        self.port.write(pn532.ACK)
                    if retry.wake:
                        prefix = pn532.WAKEUP
                    if self.clock() >= deadline:
                        break
            raise error

    def _attempt(self, code, data, deadline):
        self.port.write(data)
        now = self.clock()
        ack_deadline = min(now + self.ack_timeout, deadline)
        acked = False
        nacks = 0
        while True:
            frame = self._next(deadline if acked else ack_deadline)
            if frame is None:
                if acked or self.clock() >= deadline:
                    self.port.write(pn532.ACK)
                    self._cancelled = True
                    raise ReaderTimeout("no answer to command 0x%02X in time (cancelled)" % code)
                raise _Retry(ReaderTimeout("no ACK for command 0x%02X" % code), cancel=True, wake=True)
            kind = frame.kind
            if kind == pn532.ACK_KIND:
                acked = True
            elif kind == pn532.NACK_KIND:
                raise _Retry(ReaderError("pn532_bad_frame", "PN532 asked for command 0x%02X again" % code))
            elif kind == pn532.ERROR_KIND:
                raise _Retry(ReaderError("pn532_syntax_error", "PN532 rejected command 0x%02X" % code))
            elif kind == pn532.CORRUPT_KIND:
                nacks += 1
                if nacks > self.nack_limit:
                    self.port.write(pn532.ACK)
                    self._cancelled = True
                    raise ReaderError("pn532_bad_frame", "answer to 0x%02X corrupted %d times" % (code, nacks))
                log.info("pn532 corrupt answer, sending NACK command=0x%02X", code)
                acked = True
                self.port.write(pn532.NACK)
            elif frame.tfi == pn532.TFI_PN532 and frame.code == code + 1:
                if not acked:
                    log.info("pn532 answer without ACK command=0x%02X", code)
                return frame.data[1:]
            else:
                log.debug("pn532 ignoring stale frame %r while waiting for 0x%02X", frame, code + 1)

    def _next(self, limit):
        while not self._frames:
            now = self.clock()
            if now >= limit:
                return None
            data = self.port.read()
            if data:
                self._last_byte = self.clock()
                self._frames.extend(self._decoder.feed(data))
            elif self._decoder.pending() and self.clock() - self._last_byte >= LINE_QUIET:
                self._frames.extend(self._decoder.flush())
        return self._frames.pop(0)

    def _discard(self):
        """Forget bytes of earlier exchanges so a stale answer cannot be taken for this one."""
        if self._cancelled:
            self._cancelled = False
            deadline = self.clock() + 4 * LINE_QUIET
            quiet_since = self.clock()
            while self.clock() < deadline and self.clock() - quiet_since < LINE_QUIET:
                if self.port.read():
                    quiet_since = self.clock()
        self.port.discard_input()
        self._decoder.reset()
        self._frames = []
