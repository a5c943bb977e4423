"""The board: one small interface per device, a real driver and a unix twin.

The card-only terminal talks to five devices, each through the smallest
interface that covers what the firmware does with it (gpiozero's pin-factory
idea, in MicroPython):

  uart      the port of protocols/pn532host.py: write(data), read() -> bytes
            (what arrived within about 10 ms, b"" if nothing), discard_input(),
            open(), is_open, opened (a count); OSError when the line is gone
  buzzer    on(), off()
  led       on(), off()
  display   show(lines): up to four short lines on the OLED
  wifi      ensure() -> bool: connected now (reconnects with back-off if not)

  scanner   lines() -> the label QR scanner's complete lines since the last
            call (second UART; None on a board without one)
  buttons   presses() -> "NEXT" / "OK" presses since the last call (the
            OLED menu's two buttons; None without them)

and, on the unix port only, `field`: puts a card file on the emulated
reader's field (a farmer's tap, which on a board needs no code).

`make(config)` picks the drivers: the ESP32 ones (`board_esp32`) on a board,
the unix twins (`board_unix`: a pseudo-terminal to the project's PN532
emulator, the buzzer, LED and display recorded as lines on stdout) on the
MicroPython unix port. Nothing above this module knows which it got.
"""

import sys
import time


class Board:
    def __init__(self, uart, buzzer, led, display, wifi, field=None, scanner=None, buttons=None):
        self.uart = uart
        self.scanner = scanner
        self.buttons = buttons
        self.buzzer = buzzer
        self.led = led
        self.display = display
        self.wifi = wifi
        self.field = field

    def signal(self, approved):
        """What the buyer and the clerk hear and see: one short beep and the
        LED on for an approval, three beeps and the LED blinking for a refusal."""
        if approved:
            self.led.on()
            _beep(self.buzzer, 1, 120)
        else:
            for _ in range(3):
                self.led.on()
                _beep(self.buzzer, 1, 80)
                self.led.off()
                time.sleep_ms(60)
        self.led.off()


def _beep(buzzer, times, ms):
    for _ in range(times):
        buzzer.on()
        time.sleep_ms(ms)
        buzzer.off()


def is_unix():
    return sys.platform in ("linux", "darwin")


def make(config):
    """The board for this platform, configured by the `board` section."""
    if is_unix():
        import board_unix
        return board_unix.make(config)
    import board_esp32
    return board_esp32.make(config)
