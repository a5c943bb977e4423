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
