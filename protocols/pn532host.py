"""The host side of the PN532, over any serial line: one command exchange with
the manual's recovery rules, the commands a tap needs, and a subject card's
payload read off NTAG pages or MIFARE Classic blocks. The Pi driver
(hardware/pn532: pyserial, a pty, threads) and the MicroPython terminal
(firmware/mcu: machine.UART) each bring only their port and clock, so both
recover from the same faults in the same way.

The exchange (`Link.call`):
- waits for the ACK at most `ack_timeout`; without one it aborts whatever the
  PN532 may be doing (an ACK from the host cancels the current command, manual
  6.2.1.3), resends the command preceded by the HSU wake-up bytes (a module
  that browned out is asleep again), and gives up after `attempts` sends;
- resends the command when the PN532 answers with a NACK or a syntax-error frame;
- answers a response with a bad data checksum with a NACK, which makes the
  PN532 send the same response again (at most `nack_limit` times);
- accepts an answer whose ACK was lost on the line;
- ignores late answers to earlier, cancelled commands;
- on the overall deadline cancels the command with an ACK and raises
  ReaderTimeout, so no call outlives its timeout and the PN532 is left idle;
  the next call first waits for the line to go quiet, so an answer already on
  its way cannot be taken for the answer to a new command with the same code;
- junk on the line: the decoder resynchronises on the next start code.

The port: `write(data)`; `read()` -> the bytes that arrived, waiting at most a
short slice (about 10 ms) for the first, so every wait re-checks its deadline
without spinning; `discard_input()`; `is_open`, `open()` and `opened` (how
many times it was opened: the reader initialises the PN532 again when that
changes, which is how a replugged reader works without a restart). A port
raises ReaderDisconnected or OSError when the line is gone.

The clock: a callable giving a monotonic time that never wraps, and every
duration given to these classes is in its unit: seconds on the Pi
(time.monotonic, the defaults below), whole milliseconds on a board (unwrapped
ticks_ms: an ESP32's single-precision float could not hold seconds of uptime
to the millisecond). Runs on CPython and MicroPython alike.
"""

from protocols import card as card_format
from protocols import pn532
from protocols.card import CardRejected
from protocols.reasons import ReasonError, register

register({
    "pn532_timeout": ("读卡器无响应", "NFC reader did not answer in time"),
    "pn532_disconnected": ("读卡器未连接", "NFC reader disconnected"),
    "pn532_syntax_error": ("读卡器拒绝了命令", "NFC reader rejected the command (syntax error frame)"),
    "pn532_bad_frame": ("读卡器通信数据损坏", "NFC reader replies were corrupted"),
    "pn532_card_error": ("与卡通信失败", "communication with the card failed"),
    "pn532_auth_failed": ("卡片密钥认证失败", "card sector authentication failed"),
    "pn532_no_card": ("未检测到卡", "no card in the field"),
})

ACK_TIMEOUT = 0.1
# USB serial adapters (FTDI latency timer: 16 ms) can split a frame with a pause;
# a partial frame is only dropped as noise after the line has been quiet this long.
LINE_QUIET = 0.05
TIMEOUT = 1.0
EXCHANGE_TIMEOUT = 0.5
# One passive activation round per InListPassiveTarget keeps an empty poll to a
# few milliseconds; the poller repeats it at its own interval. The power-on
# default 0xFF means "retry until a card comes".
PASSIVE_RETRIES = 0x01

NTAG_READ = 0x30
NTAG_WRITE = 0xA2
MIFARE_AUTH_A = 0x60
MIFARE_AUTH_B = 0x61
MIFARE_READ = 0x30
MIFARE_WRITE = 0xA0

TRANSPORT_KEY = b"\xff" * 6
DEFAULT_KEYS = (TRANSPORT_KEY,)


class ReaderError(ReasonError):
    """Anything between the host and the card; `code` is one of the pn532_* codes.
    A card-level rejection (unknown, tampered, ...) is `card.CardRejected`."""


class ReaderTimeout(ReaderError):
    def __init__(self, detail=""):
        super().__init__("pn532_timeout", detail)


class ReaderDisconnected(ReaderError):
    def __init__(self, detail=""):
        super().__init__("pn532_disconnected", detail)


class CardError(ReaderError):
    """The PN532 answered but the card exchange failed; `status` is the PN532 status byte."""

    def __init__(self, status, detail="", code="pn532_card_error"):
        super().__init__(code, detail)
        self.status = status


class _Retry(Exception):
    def __init__(self, error, cancel=False, wake=False):
        super().__init__(error)
        self.error = error
        self.cancel = cancel
        self.wake = wake


class Link:
    """`log(fmt, *args)`, when given, hears of every retry (the Pi logs them;
    a board only counts them in `retries`)."""

    def __init__(self, port, clock, ack_timeout=ACK_TIMEOUT, line_quiet=LINE_QUIET, attempts=3, nack_limit=3,
                 log=None):
        self.port = port
        self.clock = clock
        self.ack_timeout = ack_timeout
        self.line_quiet = line_quiet
        self.attempts = attempts
        self.nack_limit = nack_limit
        self.log = log
        self.retries = 0
        self._decoder = pn532.Decoder()
        self._frames = []
        self._last_byte = 0
        self._cancelled = False

    def call(self, code, params, timeout, wake=False):
        """The parameters of the PN532's answer to command `code`."""
        frame = pn532.command(code, params)
        deadline = self.clock() + timeout
        try:
            self._discard()
            prefix = pn532.WAKEUP if wake else b""
            error = None
            for attempt in range(1, self.attempts + 1):
                try:
                    return self._attempt(code, prefix + frame, deadline)
                except _Retry as retry:
                    error = retry.error
                    self.retries += 1
                    if self.log:
                        self.log("pn532 retry command=0x%02X attempt=%d reason=%s", code, attempt, error)
                    if retry.cancel:
                        self.port.write(pn532.ACK)
                    if retry.wake:
                        prefix = pn532.WAKEUP
                    if self.clock() >= deadline:
                        break
            raise error
        except OSError as err:
            raise ReaderDisconnected(str(err))

    def _attempt(self, code, data, deadline):
        self.port.write(data)
        ack_deadline = min(self.clock() + self.ack_timeout, deadline)
        acked = False
        nacks = 0
        while True:
            frame = self._next(deadline if acked else ack_deadline)
            if frame is None:
                if acked or self.clock() >= deadline:
                    self.port.write(pn532.ACK)
                    self._cancelled = True
                    raise ReaderTimeout("no answer to command 0x%02X in time (cancelled)" % code)
                raise _Retry(ReaderTimeout("no ACK for command 0x%02X" % code), True, True)
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
                acked = True
                self.port.write(pn532.NACK)
            elif frame.tfi == pn532.TFI_PN532 and frame.code == code + 1:
                return frame.data[1:]
            # else: a stale answer to an earlier, cancelled command

    def _next(self, limit):
        while not self._frames:
            if self.clock() >= limit:
                return None
            data = self.port.read()
            if data:
                self._last_byte = self.clock()
                self._frames.extend(self._decoder.feed(data))
            elif self._decoder.pending() and self.clock() - self._last_byte >= self.line_quiet:
                self._frames.extend(self._decoder.flush())
        return self._frames.pop(0)

    def _discard(self):
        """Forget bytes of earlier exchanges so a stale answer cannot be taken for this one."""
        if self._cancelled:
            self._cancelled = False
            deadline = self.clock() + 4 * self.line_quiet
            quiet_since = self.clock()
            while self.clock() < deadline and self.clock() - quiet_since < self.line_quiet:
                if self.port.read():
                    quiet_since = self.clock()
        self.port.discard_input()
        self._decoder.reset()
        self._frames = []


class Reader:
    """PN532 commands and the card operations a tap needs. The reader owns "is
    the PN532 initialised": after every (re)open of the port, and after a
    timeout or an unplug (a module that restarted is in LowVbat mode again), it
    sends the wake-up, SAMConfiguration (mandatory after power-up) and
    RFConfiguration with bounded passive retries, so InListPassiveTarget with
    no card answers NbTg=0 instead of waiting for ever."""

    def __init__(self, port, clock, timeout=TIMEOUT, passive_retries=PASSIVE_RETRIES, ack_timeout=ACK_TIMEOUT,
                 exchange_timeout=EXCHANGE_TIMEOUT, line_quiet=LINE_QUIET, log=None):
        self.port = port
        self.clock = clock
        self.timeout = timeout
        self.exchange_timeout = exchange_timeout
        self.passive_retries = passive_retries
        self.log = log
        self.link = Link(port, clock, ack_timeout, line_quiet, log=log)
        self._ready_for = None   # port.opened the PN532 was initialised for

    def _ensure_ready(self):
        if not self.port.is_open:
            try:
                self.port.open()
            except OSError as err:
                raise ReaderDisconnected("cannot open the reader's line: %s" % err)
        if self._ready_for != self.port.opened:
            self.link.call(pn532.SAM_CONFIGURATION, b"\x01\x14\x01", self.timeout, True)
            self.link.call(pn532.RF_CONFIGURATION,
                           bytes((pn532.RF_MAX_RETRIES, 0xFF, 0x01, self.passive_retries)), self.timeout)
            self._ready_for = self.port.opened
            if self.log:
                self.log("pn532 ready opened=%d", self.port.opened)

    def call(self, code, params=b"", timeout=None):
        """A raw command; (re)opens and initialises the reader first when needed."""
        self._ensure_ready()
        try:
            return self.link.call(code, params, timeout or self.timeout)
        except (ReaderDisconnected, ReaderTimeout):
            self._ready_for = None
            raise

    def firmware_version(self):
        return pn532.parse_firmware_version(self.call(pn532.GET_FIRMWARE_VERSION))

    def list_target(self, timeout=None):
        """The card in the field (106 kbps type A), or None."""
        answer = self.call(pn532.IN_LIST_PASSIVE_TARGET, bytes((1, pn532.BRTY_106A)), timeout)
        try:
            targets = pn532.parse_targets_106a(answer)
        except ValueError as err:
            raise CardError(None, "bad InListPassiveTarget answer: %s" % err)
        return targets[0] if targets else None

    def exchange(self, target, data, timeout=None):
        """The card's answer to `data` (InDataExchange); CardError when the status is not ok."""
        tg = target if isinstance(target, int) else target.tg
        answer = self.call(pn532.IN_DATA_EXCHANGE, bytes((tg,)) + bytes(data), timeout or self.exchange_timeout)
        if not answer:
            raise CardError(None, "empty InDataExchange answer")
        status = answer[0]
        if status & 0x3F:
            code = "pn532_auth_failed" if status & 0x3F == 0x14 else "pn532_card_error"
            raise CardError(status, "%s (status 0x%02X)" % (pn532.status_text(status), status), code)
        return answer[1:]

    def ntag_read(self, target, page):
        """16 bytes: pages page..page+3 (READ rolls over past the last page)."""
        data = self.exchange(target, bytes((NTAG_READ, page)))
        if len(data) != 16:
            raise CardError(None, "NTAG READ %d returned %d bytes" % (page, len(data)))
        return data

    def classic_auth(self, target, block, key, key_b=False):
        """Authenticate the sector of `block`; the card is muted on failure. The
        UID sent is its last four bytes (a 7-byte UID's cascade-level 1 bytes
        do not count)."""
        if len(key) != 6:
            raise ValueError("a MIFARE key is 6 bytes")
        cmd = MIFARE_AUTH_B if key_b else MIFARE_AUTH_A
        self.exchange(target, bytes((cmd, block)) + bytes(key) + target.uid[-4:])

    def classic_read(self, target, block):
        data = self.exchange(target, bytes((MIFARE_READ, block)))
        if len(data) != 16:
            raise CardError(None, "MIFARE READ %d returned %d bytes" % (block, len(data)))
        return data


# -- subject cards: the layout is protocols/card.py's (docs/cards.md); reads stop
# as soon as the NDEF TLV says the payload is complete, so a tap is a handful of
# InDataExchange round trips.

def read_payload(reader, target, keys=DEFAULT_KEYS, key_b=False):
    """The payload bytes; CardRejected('card_unknown') for blank or foreign cards."""
    if target.kind == "ntag":
        return _read_ntag(reader, target)
    if target.kind == "classic1k":
        return _read_classic(reader, target, keys, key_b)
    raise CardRejected("card_unknown", "unsupported card type (SENS_RES %s SEL_RES %02X)"
                       % (pn532.hexstr(target.sens_res), target.sel_res))


def read_and_verify(reader, target, trusted, today, revoked=(), keys=DEFAULT_KEYS):
    """(card, payload): the verified card and the signed payload as read (the
    identity proof an authorization carries), or CardRejected with the reason;
    reader failures become `card_reader_error` so the clerk is asked to tap again."""
    try:
        payload = read_payload(reader, target, keys)
    except ReaderError as err:
        raise CardRejected("card_reader_error", "%s (%s)" % (err.detail or err.code, err.code))
    return card_format.verify(payload, target.uid, trusted, today, revoked), payload


def ntag_capacity(reader, target):
    """Bytes of user memory from the capability container, and the first read
    (CC and pages 4..6 in one round trip); CardRejected when not NDEF formatted."""
    first = reader.ntag_read(target, 3)
    if first[0] != 0xE1:
        raise CardRejected("card_unknown", "NTAG not NDEF formatted (CC %s)" % pn532.hexstr(first[:4]))
    return first[2] * 8, first


def _read_ntag(reader, target):
    capacity, first = ntag_capacity(reader, target)
    data = first[4:]
    page = 7
    while not _complete(data) and len(data) < capacity:
        data += reader.ntag_read(target, page)
        page += 4
    return card_format.parse_user_memory(data[:capacity])


def _read_classic(reader, target, keys, key_b):
    data = b""
    sector = None
    for block in card_format.classic_data_blocks():
        if block // 4 != sector:
            target = authenticate(reader, target, block, keys, key_b)
            sector = block // 4
        data += reader.classic_read(target, block)
        if _complete(data):
            break
    return card_format.parse_user_memory(data)


def _complete(data):
    extent = card_format.tlv_extent(data)
    return extent is not None and len(data) >= extent[0] + extent[1]


def authenticate(reader, target, block, keys, key_b=False):
    """The target, its sector of `block` opened with the first key that works.
    A failed MIFARE authentication mutes the card until it is selected again,
    so each further key is tried after a fresh InListPassiveTarget of the same UID."""
    last = None
    for i, key in enumerate(keys):
        if i:
            again = reader.list_target()
            if again is None or again.uid != target.uid:
                raise CardError(None, "card left the field during authentication")
            target = again
        try:
            reader.classic_auth(target, block, key, key_b)
            return target
        except CardError as err:
            if err.code != "pn532_auth_failed":
                raise
            last = err
    raise last or CardError(None, "no key to try", "pn532_auth_failed")
