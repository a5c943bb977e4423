"""The real drivers on an ESP32 board (wiring in docs/mcu.md).

PN532 on UART2 in HSU mode at 115200 baud (its default), the buzzer and the LED
on plain GPIO outputs, a 128x64 SSD1306 OLED on I2C, and the station Wi-Fi
interface. Pins come from the `board` section of the config so one firmware
fits the common boards; the defaults are the wiring in docs/mcu.md.

Not run by the tests (there is no ESP32 here): it implements the same small
interfaces as `board_unix`, and `mpy-cross` compiles it with the rest.
"""

import time

import machine

import board
import ssd1306


class HsuUart:
    """machine.UART with the interface of board_unix.PtyUart. A UART cannot
    vanish like a USB adapter; a PN532 that browned out shows as timeouts,
    and the reader initialises it again (wake-up, SAMConfiguration)."""

    def __init__(self, uart_id, tx, rx, baud=115200):
        self._args = (uart_id, baud, tx, rx)
        self.opened = 0
        self.is_open = False
        self._uart = None

    def open(self):
        uart_id, baud, tx, rx = self._args
        self._uart = machine.UART(uart_id, baudrate=baud, tx=tx, rx=rx, timeout=0, rxbuf=512)
        self.is_open = True
        self.opened += 1

    def write(self, data):
        self._uart.write(data)

    def read(self, wait_ms=10):
        deadline = time.ticks_add(time.ticks_ms(), wait_ms)
        while not self._uart.any():
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                return b""
            time.sleep_ms(1)
        return self._uart.read() or b""

    def discard_input(self):
        while self._uart.any():
            self._uart.read()


class Output:
    """A GPIO output; `active_low` for modules wired to sink current."""

    def __init__(self, pin, active_low=False):
        self._pin = machine.Pin(pin, machine.Pin.OUT)
        self._on = 0 if active_low else 1
        self.off()

    def on(self):
        self._pin.value(self._on)

    def off(self):
        self._pin.value(1 - self._on)


class Oled:
    """Four lines of text on the SSD1306 (8x8 font, 16 characters a line).
    The built-in font is ASCII only, so the board shows the English texts
    (`ssd1306.text_lines`)."""

    def __init__(self, scl, sda, address=0x3C):
        i2c = machine.I2C(0, scl=machine.Pin(scl), sda=machine.Pin(sda), freq=400000)
        self._screen = ssd1306.Screen(i2c, address)

    def show(self, lines):
        s = self._screen
        s.frame.fill(0)
        for i, line in enumerate(ssd1306.text_lines(lines)[:4]):
            s.frame.text(line, 0, i * 16)
        s.flush()


class ScannerUart:
    """The label QR scanner on the second UART (9600 baud, the usual default of
    GM65-class modules), one code a line ended by CR or LF."""

    def __init__(self, uart, tx, rx, baud=9600):
        self._uart = machine.UART(uart, baudrate=baud, tx=tx, rx=rx, timeout=0)
        self._held = b""

    def lines(self):
        data = self._uart.read()
        if not data:
            return []
        data = (self._held + data).replace(b"\r", b"\n")
        parts = data.split(b"\n")
        self._held = parts.pop()[-256:]     # a code never runs longer; a noisy line cannot grow it
        out = []
        for part in parts:
            try:
                line = part.decode().strip()
            except UnicodeError:
                continue
            if line:
                out.append(line)
        return out


class Buttons:
    """Two push buttons to ground (internal pull-ups), NEXT and OK, read on
    each loop; a press counts once, after it has been down DEBOUNCE_MS."""

    DEBOUNCE_MS = 30

    def __init__(self, next_pin, ok_pin):
        self._pins = (("NEXT", machine.Pin(next_pin, machine.Pin.IN, machine.Pin.PULL_UP)),
                      ("OK", machine.Pin(ok_pin, machine.Pin.IN, machine.Pin.PULL_UP)))
        self._down = {}

    def presses(self):
        out = []
        now = time.ticks_ms()
        for name, pin in self._pins:
            if pin.value() == 0:
                since = self._down.get(name)
                if since is None:
                    self._down[name] = now
                elif since is not True and time.ticks_diff(now, since) >= self.DEBOUNCE_MS:
                    self._down[name] = True
                    out.append(name)
            else:
                self._down.pop(name, None)
        return out


class Wifi:
    """The station interface, rejoined with back-off (1 s doubling to 60 s)
    whenever `ensure` finds it down; never blocks longer than one attempt."""

    def __init__(self, ssid, password):
        import network
        self._wlan = network.WLAN(network.STA_IF)
        self._wlan.active(True)
        self._ssid, self._password = ssid, password
        self._next = time.ticks_ms()
        self._delay = 1000

    def ensure(self):
        if self._wlan.isconnected():
            self._delay = 1000
            return True
        now = time.ticks_ms()
        if time.ticks_diff(now, self._next) >= 0:
            try:
                self._wlan.connect(self._ssid, self._password)
            except OSError:
                pass
            self._next = time.ticks_add(now, self._delay)
            self._delay = min(self._delay * 2, 60000)
        return self._wlan.isconnected()


def make(config):
    pins = config.get("board", {})
    wifi = config.get("wifi", {})
    return board.Board(
        HsuUart(pins.get("uart", 2), pins.get("tx", 17), pins.get("rx", 16)),
        Output(pins.get("buzzer", 25)), Output(pins.get("led", 2)),
        Oled(pins.get("scl", 22), pins.get("sda", 21)),
        Wifi(wifi.get("ssid", ""), wifi.get("password", "")), None,
        ScannerUart(pins.get("scanner_uart", 1), pins.get("scanner_tx", 4), pins.get("scanner_rx", 5)),
        Buttons(pins.get("next", 32), pins.get("ok", 33)))
