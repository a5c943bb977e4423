"""The PN532 over the board's UART: the shared frame codec (protocols/pn532.py)
with the Pi driver's recovery rules (hardware/pn532/link.py), in MicroPython.

- no ACK within ACK_TIMEOUT_MS: cancel (an ACK from the host aborts the
  PN532's current command), resend with the HSU wake-up in front (a module that
  browned out is asleep again), at most ATTEMPTS sends;
- a NACK or a syntax-error frame from the PN532: send the command again;
- an answer with a bad checksum: NACK it, so the PN532 repeats it (at most
  NACK_LIMIT times);
- an answer whose ACK was lost is taken; late answers to cancelled commands
  are skipped (their code is not ours), and after a cancel the next command
  first waits for the line to go quiet;
- junk on the line: the decoder resynchronises on the next start code;
- the line gone (the reader unplugged): OSError from the UART becomes
  `pn532_disconnected`; the next call reopens the port and initialises the
  PN532 again, so a replugged reader works without a restart.
Every call is bounded by its timeout.
"""

import time

from protocols import pn532
from protocols.reasons import ReasonError, register

register({
    "pn532_timeout": ("读卡器无响应", "NFC reader did not answer in time"),
    "pn532_disconnected": ("读卡器未连接", "NFC reader disconnected"),
    "pn532_syntax_error": ("读卡器拒绝了命令", "NFC reader rejected the command (syntax error frame)"),
    "pn532_bad_frame": ("读卡器通信数据损坏", "NFC reader replies were corrupted"),
    "pn532_card_error": ("与卡通信失败", "communication with the card failed"),
    "pn532_auth_failed": ("卡片密钥认证失败", "card sector authentication failed"),
})

ACK_TIMEOUT_MS = 100
LINE_QUIET_MS = 50       # a partial frame is junk once the line was quiet this long
ATTEMPTS = 3
NACK_LIMIT = 3
TIMEOUT_MS = 1000
EXCHANGE_TIMEOUT_MS = 500
PASSIVE_RETRIES = 0x01   # one activation round per InListPassiveTarget: an empty poll is quick


class ReaderError(ReasonError):
    """Anything between the host and the card; `code` is one of the pn532_* codes."""


class _Retry(Exception):
    def __init__(self, error, cancel=False, wake=False):
        super().__init__()
        self.error = error
        self.cancel = cancel
        self.wake = wake


def _now():
    return time.ticks_ms()


def _left(deadline):
    return time.ticks_diff(deadline, time.ticks_ms())


class Link:
    def __init__(self, uart):
        self.uart = uart
        self._decoder = pn532.Decoder()
        self._frames = []
        self._last_byte = _now()
        self._cancelled = False
        self.retries = 0

    def call(self, code, params=b"", timeout_ms=TIMEOUT_MS, wake=False):
        """The parameters of the PN532's answer to command `code`."""
        frame = pn532.command(code, params)
        deadline = time.ticks_add(_now(), timeout_ms)
        try:
            self._discard()
            prefix = pn532.WAKEUP if wake else b""
            error = None
            for _ in range(ATTEMPTS):
                try:
                    return self._attempt(code, prefix + frame, deadline)
                except _Retry as retry:
                    error = retry.error
                    self.retries += 1
                    if retry.cancel:
                        self.uart.write(pn532.ACK)
                    if retry.wake:
                        prefix = pn532.WAKEUP
                    if _left(deadline) <= 0:
                        break
            raise error
        except OSError as err:
            raise ReaderError("pn532_disconnected", str(err))

    def _attempt(self, code, data, deadline):
        self.uart.write(data)
        ack_deadline = time.ticks_add(_now(), ACK_TIMEOUT_MS)
        if time.ticks_diff(deadline, ack_deadline) < 0:
            ack_deadline = deadline
        acked = False
        nacks = 0
        while True:
            frame = self._next(deadline if acked else ack_deadline)
            if frame is None:
                if acked or _left(deadline) <= 0:
                    self.uart.write(pn532.ACK)
                    self._cancelled = True
                    raise ReaderError("pn532_timeout", "no answer to command 0x%02X in time (cancelled)" % code)
                raise _Retry(ReaderError("pn532_timeout", "no ACK for command 0x%02X" % code), True, True)
            kind = frame.kind
            if kind == pn532.ACK_KIND:
                acked = True
            elif kind == pn532.NACK_KIND:
                raise _Retry(ReaderError("pn532_bad_frame", "PN532 asked for command 0x%02X again" % code))
            elif kind == pn532.ERROR_KIND:
                raise _Retry(ReaderError("pn532_syntax_error", "PN532 rejected command 0x%02X" % code))
            elif kind == pn532.CORRUPT_KIND:
                nacks += 1
                if nacks > NACK_LIMIT:
                    self.uart.write(pn532.ACK)
                    self._cancelled = True
                    raise ReaderError("pn532_bad_frame", "answer to 0x%02X corrupted %d times" % (code, nacks))
                acked = True
                self.uart.write(pn532.NACK)
            elif frame.tfi == pn532.TFI_PN532 and frame.code == code + 1:
                return frame.data[1:]
            # else: a stale answer to an earlier, cancelled command

    def _next(self, limit):
        while not self._frames:
            wait = _left(limit)
            if wait <= 0:
                return None
            data = self.uart.read(min(wait, 10))
            if data:
                self._last_byte = _now()
                self._frames.extend(self._decoder.feed(data))
            elif self._decoder.pending() and time.ticks_diff(_now(), self._last_byte) >= LINE_QUIET_MS:
                self._frames.extend(self._decoder.flush())
        return self._frames.pop(0)

    def _discard(self):
        """Forget earlier exchanges' bytes, so a stale answer is never taken for this one."""
        if self._cancelled:
            self._cancelled = False
            deadline = time.ticks_add(_now(), 4 * LINE_QUIET_MS)
            quiet_since = _now()
            while _left(deadline) > 0 and time.ticks_diff(_now(), quiet_since) < LINE_QUIET_MS:
                if self.uart.read(10):
                    quiet_since = _now()
        self.uart.discard()
        self._decoder.reset()
        self._frames = []


class Reader:
    """PN532 commands and the card operations a tap needs. The reader owns
    "is the PN532 initialised": after every (re)open of the line and after a
    timeout (a module that restarted is in LowVbat mode again) it sends the
    wake-up, SAMConfiguration and RFConfiguration with bounded passive retries."""

    def __init__(self, uart):
        self.uart = uart
        self.link = Link(uart)
        self._ready_for = None

    def _ensure_ready(self):
        if self._ready_for != self.uart.opened or self.uart.opened == 0:
            try:
                self.uart.discard()   # opens the line when it is closed
            except OSError as err:
                raise ReaderError("pn532_disconnected", str(err))
            self.link.call(pn532.SAM_CONFIGURATION, b"\x01\x14\x01", TIMEOUT_MS, True)
            self.link.call(pn532.RF_CONFIGURATION, bytes((pn532.RF_MAX_RETRIES, 0xFF, 0x01, PASSIVE_RETRIES)))
            self._ready_for = self.uart.opened

    def call(self, code, params=b"", timeout_ms=TIMEOUT_MS):
        self._ensure_ready()
        try:
            return self.link.call(code, params, timeout_ms)
        except ReaderError as err:
            if err.code in ("pn532_timeout", "pn532_disconnected"):
                self._ready_for = None
            raise

    def firmware_version(self):
        return pn532.parse_firmware_version(self.call(pn532.GET_FIRMWARE_VERSION))

    def list_target(self):
        """The card in the field (106 kbps type A), or None."""
        answer = self.call(pn532.IN_LIST_PASSIVE_TARGET, bytes((1, pn532.BRTY_106A)))
        try:
            targets = pn532.parse_targets_106a(answer)
        except ValueError as err:
            raise ReaderError("pn532_card_error", "bad InListPassiveTarget answer: %s" % err)
        return targets[0] if targets else None

    def wait_for_target(self, timeout_ms, interval_ms=50):
        """Poll until a card is on the field or the time is up (None). A reader
        error on the way (unplugged, mute) is retried until the deadline."""
        deadline = time.ticks_add(_now(), timeout_ms)
        error = None
        while True:
            try:
                target = self.list_target()
                if target is not None:
                    return target
            except ReaderError as err:
                error = err
            if _left(deadline) <= 0:
                if error is not None:
                    raise error
                return None
            time.sleep_ms(min(interval_ms, max(_left(deadline), 0)))

    def exchange(self, target, data, timeout_ms=EXCHANGE_TIMEOUT_MS):
        answer = self.call(pn532.IN_DATA_EXCHANGE, bytes((target.tg,)) + bytes(data), timeout_ms)
        if not answer:
            raise ReaderError("pn532_card_error", "empty InDataExchange answer")
        status = answer[0]
        if status & 0x3F:
            code = "pn532_auth_failed" if status & 0x3F == 0x14 else "pn532_card_error"
            raise ReaderError(code, "%s (status 0x%02X)" % (pn532.status_text(status), status))
        return answer[1:]

    def ntag_read(self, target, page):
        data = self.exchange(target, bytes((0x30, page)))
        if len(data) != 16:
            raise ReaderError("pn532_card_error", "NTAG READ %d returned %d bytes" % (page, len(data)))
        return data

    def classic_auth(self, target, block, key):
        self.exchange(target, bytes((0x60, block)) + bytes(key) + target.uid[-4:])

    def classic_read(self, target, block):
        data = self.exchange(target, bytes((0x30, block)))
        if len(data) != 16:
            raise ReaderError("pn532_card_error", "MIFARE READ %d returned %d bytes" % (block, len(data)))
        return data
