"""The terminal's devices, opened by URL through one factory (gpiozero's pin
factory): the PN532 card reader with its poller, the ESC/POS receipt printer,
the camera. The kiosk session gets a factory passed in instead of importing
drivers itself, so terminal_ui imports no `hardware` module (ARCHITECTURE.md,
import rules) and a simulator or a test can hand in another factory with the
same methods. Each URL picks the real driver or its simulated twin
(`/dev/ttyAMA0` or a pty for the reader, `serial://` or a pty for the printer,
`v4l2://0` or `file://*.jpg` for the camera)."""

from __future__ import annotations

from hardware.camera import open_camera
from hardware.pn532 import cards
from hardware.pn532.poller import PRESENT, READER_ERROR, READER_OK, REMOVED, CardPoller
from hardware.pn532.reader import PN532
from hardware.printer import Printer, PrinterError

__all__ = ["DeviceFactory", "PrinterError", "PRESENT", "READER_ERROR", "READER_OK", "REMOVED"]


class DeviceFactory:
    """Opens the devices the `[kiosk]` table names; each method returns a
    started device (the caller closes it)."""

    def card_reader(self, url: str, timeout: float = 0.5, interval: float = 0.05):
        """(reader, poller): the PN532 at `url` and a started poller that reads
        each card's signed payload when it appears (events PRESENT, REMOVED,
        READER_ERROR, READER_OK)."""
        reader = PN532(url, timeout=timeout)

        def read(reader, target):
            return cards.read_payload(reader, target)

        return reader, CardPoller(reader, interval=interval, on_present=read).start()

    def printer(self, url: str, columns: int = 32) -> Printer:
        return Printer(url, columns=columns)

    def camera(self, url: str):
        return open_camera(url)
