"""A minimal SSD1306 (128x64, I2C) driver: a framebuf the firmware draws into,
and `flush` to send it. Written from the SSD1306 datasheet's command table
(section 9): only what a four-line status screen needs."""

import framebuf

WIDTH = 128
HEIGHT = 64

# Display off; clock; multiplex 64; offset 0; start line 0; charge pump on;
# horizontal addressing; segment remap; COM scan descending; COM pins; contrast;
# precharge; VCOMH; resume from RAM; normal (not inverted); display on.
_INIT = (0xAE, 0xD5, 0x80, 0xA8, 0x3F, 0xD3, 0x00, 0x40, 0x8D, 0x14, 0x20, 0x00, 0xA1, 0xC8,
         0xDA, 0x12, 0x81, 0xCF, 0xD9, 0xF1, 0xDB, 0x40, 0xA4, 0xA6, 0xAF)


def text_lines(lines, width=16):
    """`lines` as the built-in 8x8 font draws them, `width` to a line. The
    font has glyphs for printable ASCII only, and framebuf draws every byte
    of a UTF-8 character above 127 as a filled block: each Chinese character
    of "已批准 APPROVED" became three blocks and pushed the English off the
    16 columns. So what it has no glyph for is left out and the spaces around
    it closed up ("APPROVED"), and a line with nothing left is dropped. The
    screens are written "中文 English" so that the board shows the English
    and the unix twin both. (Here, not in board.py: only a board with this
    display loads it, the unix port's heap does not pay for it.)"""
    out = []
    for line in lines:
        kept = "".join([ch for ch in line if " " <= ch <= "~"])
        kept = " ".join(kept.split())[:width]
        if kept:
            out.append(kept)
    return out


class Screen:
    def __init__(self, i2c, address=0x3C):
        self._i2c = i2c
        self._address = address
        self._buffer = bytearray(WIDTH * HEIGHT // 8)
        self.frame = framebuf.FrameBuffer(self._buffer, WIDTH, HEIGHT, framebuf.MONO_VLSB)
        for command in _INIT:
            self._command(command)

    def _command(self, value):
        self._i2c.writeto(self._address, bytes((0x80, value)))

    def flush(self):
        for command in (0x21, 0, WIDTH - 1, 0x22, 0, HEIGHT // 8 - 1):  # whole screen as the window
            self._command(command)
        self._i2c.writevto(self._address, (b"\x40", self._buffer))
