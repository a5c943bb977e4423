"""ESC/POS: the command bytes a thermal receipt printer understands, and a decoder
that turns those bytes back into lines of text and QR payloads.

Both directions live here, like the PN532 frame codec, so the driver and its
simulated twin cannot drift apart: the driver writes what `Document` builds, the
emulator reads it with `Decoder`, and a test compares the two.

Only the commands the receipts use are built (Epson ESC/POS reference, the subset
every 58/80 mm Chinese printer with a GB18030 font implements):

    ESC @          initialise (clears bold, size, alignment)
    FS &  / FS .   Chinese (double-byte) character mode on / off
    ESC E n        bold on (n=1) / off (n=0)
    GS ! n         character size: high nibble = width-1, low nibble = height-1
    ESC a n        alignment 0 left, 1 centre, 2 right
    LF             print the line buffer and feed one line
    ESC d n        print and feed n lines
    GS ( k         QR code: model (fn 65), module size (67), error correction (69),
                   store data (80), print (81)
    GS V 66 n      feed n dots and partial cut
    DLE EOT n      real-time status (n=1 printer, n=4 paper sensor)

Text is GB18030: the national standard Chinese printers ship with, a superset of
GBK, so every character a name or product can hold has a code.
"""

from __future__ import annotations

ESC = b"\x1b"
GS = b"\x1d"
FS = b"\x1c"
DLE = b"\x10"
LF = b"\n"

ENCODING = "gb18030"

INIT = ESC + b"@"
CHINESE_ON = FS + b"&"
CHINESE_OFF = FS + b"."
ALIGN = {"left": 0, "center": 1, "right": 2}
QR_ECC = {"L": 48, "M": 49, "Q": 50, "H": 51}
QR_MAX = 7089 - 3

STATUS_PRINTER = DLE + b"\x04\x01"
STATUS_PAPER = DLE + b"\x04\x04"
# Fixed bits of the real-time status bytes: bit 1 is always 1, bit 4 always 1,
# bits 0 and 7 always 0 (Epson DLE EOT reference).
STATUS_BASE = 0x12
PAPER_OUT_BITS = 0x60      # paper sensor: roll end detected (bits 5 and 6)
OFFLINE_BIT = 0x08         # printer status: off-line (cover open, paper out)


def display_width(text: str) -> int:
    """Columns a string takes on a receipt: double-byte characters take two."""
    return sum(1 if ord(ch) < 0x80 else 2 for ch in text)


class Document:
    """A receipt as ESC/POS bytes, built line by line. Pure: no I/O."""

    def __init__(self, columns: int = 32):
        self.columns = columns
        self._out = bytearray(INIT + CHINESE_ON)
        self._bold = False
        self._size = (1, 1)
        self._align = "left"

    def bold(self, on: bool = True) -> "Document":
        if on != self._bold:
            self._out += ESC + b"E" + bytes([1 if on else 0])
            self._bold = on
        return self

    def size(self, width: int = 1, height: int = 1) -> "Document":
        if not (1 <= width <= 8 and 1 <= height <= 8):
            raise ValueError("character size is 1..8 in each direction")
        if (width, height) != self._size:
            self._out += GS + b"!" + bytes([((width - 1) << 4) | (height - 1)])
            self._size = (width, height)
        return self

    def align(self, where: str = "left") -> "Document":
        if where not in ALIGN:
            raise ValueError("alignment is left, center or right")
        if where != self._align:
            self._out += ESC + b"a" + bytes([ALIGN[where]])
            self._align = where
        return self

    def text(self, line: str = "") -> "Document":
        """One printed line; control characters are dropped so text can never
        smuggle a command to the printer (a product name is data, not code)."""
        clean = "".join(ch for ch in line if ch >= " " and ch != "\x7f")
        self._out += clean.encode(ENCODING, errors="replace") + LF
        return self

    def pair(self, left: str, right: str) -> "Document":
        """Left and right text on one line, padded to the paper width."""
        gap = self.columns // self._size[0] - display_width(left) - display_width(right)
        if gap < 1:
            return self.text(left).text(" " * max(0, self.columns // self._size[0] - display_width(right)) + right)
        return self.text(left + " " * gap + right)

    def rule(self, ch: str = "-") -> "Document":
        return self.text(ch * (self.columns // self._size[0]))

    def feed(self, lines: int = 1) -> "Document":
        self._out += ESC + b"d" + bytes([max(0, min(255, lines))])
        return self

    def qr(self, data: str, module: int = 6, ecc: str = "M") -> "Document":
        payload = data.encode("utf-8")
        if not payload or len(payload) > QR_MAX:
            raise ValueError("QR payload must be 1..%d bytes" % QR_MAX)
        if not 1 <= module <= 16:
            raise ValueError("QR module size is 1..16 dots")
        n = len(payload) + 3
        self._out += GS + b"(k" + bytes([4, 0, 49, 65, 50, 0])                  # model 2
        self._out += GS + b"(k" + bytes([3, 0, 49, 67, module])                 # module size
        self._out += GS + b"(k" + bytes([3, 0, 49, 69, QR_ECC[ecc]])            # error correction
        self._out += GS + b"(k" + bytes([n & 0xFF, n >> 8, 49, 80, 48]) + payload  # store
        self._out += GS + b"(k" + bytes([3, 0, 49, 81, 48])                     # print
        return self

    def cut(self, feed_dots: int = 48) -> "Document":
        self._out += GS + b"V" + bytes([66, max(0, min(255, feed_dots))])
        return self

    def bytes(self) -> bytes:
        return bytes(self._out)


class Line:
    """A decoded printed line with the attributes it was printed with."""

    __slots__ = ("text", "bold", "width", "height", "align")

    def __init__(self, text, bold, width, height, align):
        self.text, self.bold, self.width, self.height, self.align = text, bold, width, height, align

    def __repr__(self):
        return "Line(%r%s)" % (self.text, " bold" if self.bold else "")


class Receipt:
    """What came out of the printer between two cuts."""

    def __init__(self):
        self.lines: list[Line] = []
        self.qr: list[str] = []
        self.cut = False

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


class Decoder:
    """Feed it bytes as they arrive (in any chunking); it yields finished receipts
    (at each cut) and keeps the one being printed in `current`. Unknown ESC/GS
    sequences are counted in `unknown` and skipped by their known lengths where
    possible, as a printer would."""

    def __init__(self):
        self._buf = bytearray()
        self._line = bytearray()
        self.current = Receipt()
        self.unknown = 0
        self._qr_data = None
        self.status_requests: list[int] = []
        self._reset_style()

    def _reset_style(self):
        self.bold, self.width, self.height, self.align = False, 1, 1, "left"
        self.chinese = False

    def feed(self, data: bytes) -> list[Receipt]:
        self._buf += data
        done = []
        while self._buf:
            used = self._step(done)
            if used == 0:
                break  # incomplete command: wait for more bytes
            del self._buf[:used]
        return done

    def _emit_line(self):
        text = bytes(self._line).decode(ENCODING, errors="replace")
        self.current.lines.append(Line(text, self.bold, self.width, self.height, self.align))
        self._line.clear()

    def _step(self, done) -> int:
        b = self._buf
        c = b[0]
        if c == 0x0A:
            self._emit_line()
            return 1
        if c == 0x0D:
            return 1
        if c == 0x1B:
            if len(b) < 2:
                return 0
            op = b[1]
            if op == ord("@"):
                if self._line:
                    self._emit_line()
                self._reset_style()
                return 2
            if len(b) < 3:
                return 0
            n = b[2]
            if op == ord("E"):
                self.bold = bool(n & 1)
            elif op == ord("a"):
                self.align = {0: "left", 1: "center", 2: "right", 48: "left", 49: "center", 50: "right"}.get(n, "left")
            elif op == ord("d"):
                if self._line:
                    self._emit_line()
                for _ in range(n):
                    self.current.lines.append(Line("", self.bold, self.width, self.height, self.align))
            elif op == ord("t") or op == ord("!") or op == ord("-") or op == ord("M"):
                pass
            else:
                self.unknown += 1
            return 3
        if c == 0x1C:
            if len(b) < 2:
                return 0
            if b[1] == ord("&"):
                self.chinese = True
            elif b[1] == ord("."):
                self.chinese = False
            else:
                self.unknown += 1
            return 2
        if c == 0x10:
            if len(b) < 3:
                return 0
            if b[1] == 0x04:
                self.status_requests.append(b[2])
            else:
                self.unknown += 1
            return 3
        if c == 0x1D:
            if len(b) < 2:
                return 0
            op = b[1]
            if op == ord("!"):
                if len(b) < 3:
                    return 0
                self.width, self.height = (b[2] >> 4) + 1, (b[2] & 0x0F) + 1
                return 3
            if op == ord("V"):
                if len(b) < 3:
                    return 0
                m = b[2]
                length = 4 if m in (65, 66, 97, 98, 103, 104) else 3
                if len(b) < length:
                    return 0
                if self._line:
                    self._emit_line()
                self.current.cut = True
                done.append(self.current)
                self.current = Receipt()
                return length
            if op == ord("("):
                if len(b) < 5:
                    return 0
                n = b[3] | (b[4] << 8)
                if len(b) < 5 + n:
                    return 0
                if b[2] == ord("k"):
                    self._qr(bytes(b[5:5 + n]))
                else:
                    self.unknown += 1
                return 5 + n
            self.unknown += 1
            return 3 if len(b) >= 3 else 0
        # text byte; GB18030 multi-byte sequences are kept whole in the line buffer
        self._line.append(c)
        return 1

    def _qr(self, body: bytes) -> None:
        if len(body) < 2 or body[0] != 49:
            self.unknown += 1
            return
        fn = body[1]
        if fn == 80:
            self._qr_data = body[3:].decode("utf-8", errors="replace")
        elif fn == 81:
            if self._line:
                self._emit_line()
            if self._qr_data is not None:
                self.current.qr.append(self._qr_data)
                self.current.lines.append(Line("[QR:%s]" % self._qr_data, False, 1, 1, self.align))
        # fn 65 (model), 67 (size), 69 (error correction): layout only
