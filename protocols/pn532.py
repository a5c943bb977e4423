"""PN532 host-controller frames (NXP PN532 user manual UM0701-02, section 6.2).

The same codec runs in the Raspberry Pi driver, in the PN532 emulator and on the
MicroPython card-only terminal, so it keeps to what MicroPython runs: plain classes,
bytes (MicroPython's bytearray cannot delete slices), no typing at runtime.

Wire shapes:
  information frame  00 00 FF LEN LCS TFI PD0..PDn DCS 00   (LEN counts TFI + PD)
  extended frame     00 00 FF FF FF LENM LENL LCS TFI PD0..PDn DCS 00
  ACK                00 00 FF 00 FF 00
  NACK               00 00 FF FF 00 00
  error frame        00 00 FF 01 FF 7F 81 00   (application-level syntax error)
LCS makes LEN + LCS == 0 (mod 256); DCS makes TFI + PD + DCS == 0 (mod 256).
"""

TFI_HOST = 0xD4
TFI_PN532 = 0xD5
TFI_ERROR = 0x7F

ACK = b"\x00\x00\xff\x00\xff\x00"
NACK = b"\x00\x00\xff\xff\x00\x00"
ERROR_FRAME = b"\x00\x00\xff\x01\xff\x7f\x81\x00"
# HSU wake-up (manual 7.2.11 / 6.3.2.3): 0x55 pulses the line out of power-down and
# the long run of zeros gives the oscillator time to start before a real frame.
WAKEUP = b"\x55\x55" + b"\x00" * 14

START = b"\x00\xff"
MAX_NORMAL = 255
# The PN532 buffers at most 264 bytes of frame data; anything longer announced by a
# header is line noise, and waiting for it would stall every frame behind it.
MAX_DATA = 265

# Commands used by the driver (manual section 7).
DIAGNOSE = 0x00
GET_FIRMWARE_VERSION = 0x02
SAM_CONFIGURATION = 0x14
RF_CONFIGURATION = 0x32
IN_DATA_EXCHANGE = 0x40
IN_COMMUNICATE_THRU = 0x42
IN_LIST_PASSIVE_TARGET = 0x4A
IN_RELEASE = 0x52

# RFConfiguration items.
RF_FIELD = 0x01
RF_TIMINGS = 0x02
RF_MAX_RETRY_COM = 0x04
RF_MAX_RETRIES = 0x05

# Baud rate / modulation for InListPassiveTarget: 106 kbps ISO/IEC 14443 type A.
BRTY_106A = 0x00

# Status byte of InDataExchange & co. (manual table 7.1), low 6 bits.
STATUS = {
    0x00: "ok",
    0x01: "target timeout",
    0x02: "CRC error",
    0x03: "parity error",
    0x04: "erroneous bit count",
    0x05: "framing error",
    0x06: "bit collision",
    0x07: "buffer too small",
    0x09: "RF buffer overflow",
    0x0A: "RF field not switched on in time",
    0x0B: "RF protocol error",
    0x0D: "temperature error",
    0x0E: "internal buffer overflow",
    0x10: "invalid parameter",
    0x12: "DEP command not supported",
    0x13: "DEP data format error",
    0x14: "MIFARE authentication error",
    0x23: "UID check byte wrong",
    0x25: "DEP invalid device state",
    0x26: "operation not allowed",
    0x27: "command not acceptable in this context",
    0x29: "target released by initiator",
    0x2A: "card ID mismatch",
    0x2B: "card disappeared",
    0x2C: "NFCID3 mismatch",
    0x2D: "over-current",
    0x2E: "NAD missing in DEP frame",
}

ACK_KIND = "ack"
NACK_KIND = "nack"
ERROR_KIND = "error"
DATA_KIND = "data"
CORRUPT_KIND = "corrupt"


def status_text(status):
    return STATUS.get(status & 0x3F, "status 0x%02X" % status)


def checksum(data):
    """The byte that makes the sum of data plus itself zero modulo 256."""
    return (-sum(data)) & 0xFF


class Frame:
    """One item found on the wire: ack, nack, error, data, or corrupt.

    `corrupt` is a frame whose header was sound but whose data checksum failed; a
    host answers it with a NACK so the PN532 sends the response again.
    """

    def __init__(self, kind, tfi=None, data=b"", extended=False):
        self.kind = kind
        self.tfi = TFI_ERROR if kind == ERROR_KIND and tfi is None else tfi
        self.data = bytes(data)
        self.extended = extended

    @property
    def code(self):
        return self.data[0] if self.data else None

    def encode(self):
        if self.kind == ACK_KIND:
            return ACK
        if self.kind == NACK_KIND:
            return NACK
        if self.kind == ERROR_KIND:
            return ERROR_FRAME
        if self.kind == DATA_KIND:
            return encode(self.tfi, self.data, self.extended)
        raise ValueError("a corrupt frame has no encoding")

    def __eq__(self, other):
        return (
            isinstance(other, Frame)
            and self.kind == other.kind
            and self.tfi == other.tfi
            and self.data == other.data
            and self.extended == other.extended
        )

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash((self.kind, self.tfi, self.data, self.extended))

    def __repr__(self):
        if self.kind != DATA_KIND:
            return "Frame(%s)" % self.kind
        return "Frame(data tfi=%02X %s%s)" % (self.tfi, hexstr(self.data), " ext" if self.extended else "")


def encode(tfi, data, extended=False):
    """An information frame; extended automatically when TFI + data exceed 255."""
    body = bytes([tfi]) + bytes(data)
    n = len(body)
    if n > 0xFFFF:
        raise ValueError("frame data too long: %d bytes" % n)
    if extended or n > MAX_NORMAL:
        head = b"\x00\x00\xff\xff\xff" + bytes([n >> 8, n & 0xFF, checksum(bytes([n >> 8, n & 0xFF]))])
    else:
        head = b"\x00\x00\xff" + bytes([n, (-n) & 0xFF])
    return head + body + bytes([checksum(body), 0])


def command(code, params=b""):
    """Host -> PN532 frame for a command code and its parameters."""
    return encode(TFI_HOST, bytes([code]) + bytes(params))


def response(code, params=b""):
    """PN532 -> host frame answering command `code` (the response code is code + 1)."""
    return encode(TFI_PN532, bytes([code + 1]) + bytes(params))


class Decoder:
    """Streaming frame decoder that resynchronises after junk or a broken frame.

    Bytes may arrive split anywhere. A header whose length checksum fails is junk: the
    scan moves one byte on. A frame whose data checksum fails is reported as corrupt
    and the scan restarts one byte after its start code, so a real frame hidden
    behind a fake header is still found; so does a frame with sound checksums but
    a TFI that is neither D4, D5 nor the error frame's 7F. A header that announces more bytes than
    have arrived waits; `flush()` tells the decoder the line went quiet, which turns
    such a pending header into junk (a real PN532 sends a frame without gaps).
    """

    def __init__(self, max_data=MAX_DATA):
        self.max_data = max_data
        self._buf = b""

    def reset(self):
        self._buf = b""

    def pending(self):
        return len(self._buf)

    def feed(self, data):
        if data:
            self._buf += bytes(data)
        return self._scan(False)

    def flush(self):
        return self._scan(True)

    def _scan(self, final):
        out = []
        buf = self._buf
        while True:
            i = buf.find(START)
            if i < 0:
                # Keep a trailing 0x00: it may be the first half of a start code.
                buf = buf[-1:] if buf[-1:] == b"\x00" else b""
                break
            if i:
                buf = buf[i:]
            n = len(buf)
            if n < 4:
                if final:
                    buf = buf[1:]
                    continue
                break
            b1 = buf[2]
            b2 = buf[3]
            if b1 == 0x00 and b2 == 0xFF:
                out.append(Frame(ACK_KIND))
                buf = buf[4:]
                continue
            if b1 == 0xFF and b2 == 0x00:
                out.append(Frame(NACK_KIND))
                buf = buf[4:]
                continue
            if b1 == 0xFF and b2 == 0xFF:
                if n < 7:
                    if final:
                        buf = buf[1:]
                        continue
                    break
                if (buf[4] + buf[5] + buf[6]) & 0xFF:
                    buf = buf[1:]
                    continue
                length = (buf[4] << 8) | buf[5]
                head = 7
                extended = True
            else:
                if (b1 + b2) & 0xFF:
                    buf = buf[1:]
                    continue
                length = b1
                head = 4
                extended = False
            if length == 0 or length > self.max_data + 1:
                buf = buf[1:]
                continue
            need = head + length + 1
            if n < need:
                if final:
                    buf = buf[1:]
                    continue
                break
            body = buf[head:head + length]
            if (sum(body) + buf[head + length]) & 0xFF:
                out.append(Frame(CORRUPT_KIND))
                buf = buf[1:]
                continue
            tfi = body[0]
            if tfi == TFI_ERROR and length == 1:
                out.append(Frame(ERROR_KIND, TFI_ERROR))
            elif tfi == TFI_HOST or tfi == TFI_PN532:
                out.append(Frame(DATA_KIND, tfi, body[1:], extended))
            else:
                # Checksums can pass by chance on noise (00 FF 01 FF 00 00 is "valid"); a
                # TFI that no PN532 or host sends marks it as noise, not a frame.
                buf = buf[1:]
                continue
            buf = buf[need:]
        self._buf = buf
        return out


def decode_all(data):
    """Every frame in a complete byte string (convenience for tests and tools)."""
    decoder = Decoder()
    return decoder.feed(data) + decoder.flush()


def hexstr(data):
    return "".join("%02X" % b for b in data)


def unhex(text):
    text = text.replace(" ", "").replace(":", "")
    return bytes(int(text[i:i + 2], 16) for i in range(0, len(text), 2))


class FirmwareVersion:
    """GetFirmwareVersion answer: IC (0x32 for a PN532), version, revision, support."""

    def __init__(self, ic, ver, rev, support):
        self.ic = ic
        self.ver = ver
        self.rev = rev
        self.support = support

    def __str__(self):
        return "PN5%02X firmware %d.%d" % (self.ic, self.ver, self.rev)

    def __eq__(self, other):
        return isinstance(other, FirmwareVersion) and self.astuple() == other.astuple()

    def astuple(self):
        return (self.ic, self.ver, self.rev, self.support)


def parse_firmware_version(params):
    if len(params) != 4:
        raise ValueError("GetFirmwareVersion answer must be 4 bytes, got %d" % len(params))
    return FirmwareVersion(params[0], params[1], params[2], params[3])


class Target:
    """A 106 kbps type A target as listed by InListPassiveTarget.

    The kind comes from SENS_RES (ATQA) and SEL_RES (SAK): NTAG21x answer 00 44 / 00,
    MIFARE Classic 1K 00 04 / 08 (4K: 00 02 / 18).
    """

    def __init__(self, tg, sens_res, sel_res, uid, ats=b""):
        self.tg = tg
        self.sens_res = bytes(sens_res)
        self.sel_res = sel_res
        self.uid = bytes(uid)
        self.ats = bytes(ats)

    @property
    def kind(self):
        if self.sel_res & 0x7F == 0x00 and self.sens_res == b"\x00\x44":
            return "ntag"
        if self.sel_res & 0x7F == 0x08:
            return "classic1k"
        if self.sel_res & 0x7F == 0x18:
            return "classic4k"
        return "other"

    def __eq__(self, other):
        return isinstance(other, Target) and (
            self.tg, self.sens_res, self.sel_res, self.uid, self.ats
        ) == (other.tg, other.sens_res, other.sel_res, other.uid, other.ats)

    def __repr__(self):
        return "Target(tg=%d uid=%s kind=%s)" % (self.tg, hexstr(self.uid), self.kind)


def encode_targets_106a(targets):
    """InListPassiveTarget answer parameters for type A targets (the emulator's side)."""
    out = bytes([len(targets)])
    for t in targets:
        out += bytes([t.tg]) + t.sens_res + bytes([t.sel_res, len(t.uid)]) + t.uid
        if t.ats:
            out += t.ats
    return out


def parse_targets_106a(params):
    """Targets from an InListPassiveTarget answer at 106 kbps type A.

    An ATS follows the UID only for ISO/IEC 14443-4 targets (SEL_RES bit 6); its first
    byte is its own length.
    """
    if not params:
        raise ValueError("empty InListPassiveTarget answer")
    count = params[0]
    pos = 1
    targets = []
    for _ in range(count):
        if len(params) < pos + 5:
            raise ValueError("truncated target in InListPassiveTarget answer")
        tg = params[pos]
        sens_res = params[pos + 1:pos + 3]
        sel_res = params[pos + 3]
        uid_len = params[pos + 4]
        pos += 5
        if uid_len not in (4, 7, 10) or len(params) < pos + uid_len:
            raise ValueError("bad UID length %d in InListPassiveTarget answer" % uid_len)
        uid = params[pos:pos + uid_len]
        pos += uid_len
        ats = b""
        if sel_res & 0x20 and pos < len(params):
            ats_len = params[pos]
            ats = params[pos:pos + ats_len]
            pos += ats_len
        targets.append(Target(tg, sens_res, sel_res, uid, ats))
    return targets
