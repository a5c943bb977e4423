"""The receipt printer: ESC/POS bytes to a port named by a URL.

URLs, in the configuration style of every device here:

    /dev/ttyUSB0, serial:///dev/ttyS0?baud=9600   a serial printer (pyserial)
    lp:///dev/usb/lp0                              a USB printer-class device: a
                                                   plain character device, not a tty
    socket://192.168.1.50:9100, loop://, spy://... any pyserial URL (network
                                                   printers listen on raw port 9100)

Serial thermal printers ship at 9600 baud more often than not (Xprinter,
GPrinter); the default follows them, a URL's `?baud=` overrides it.

Why the port is opened per receipt: a printer is switched off, runs out of paper
or is unplugged between sales far more often than a card reader. Opening for each
job means the next receipt works as soon as the printer is back, with no
reconnect state to get wrong; a receipt is a few hundred bytes, so the cost of
the open is nothing next to the paper feed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from urllib.parse import parse_qs, urlsplit

import serial

from hardware.printer import escpos
from protocols import reasons

log = logging.getLogger(__name__)

DEFAULT_BAUD = 9600
WRITE_TIMEOUT = 5.0

reasons.register({
    "printer_unavailable": ("小票打印机未连接或无响应，请检查电源和连线", "Receipt printer not connected or not answering"),
    "printer_paper_out": ("小票打印机缺纸，请装纸后重打", "Receipt printer is out of paper: load paper and reprint"),
})


class PrinterError(reasons.ReasonError):
    """A receipt could not be printed; the sale itself is already recorded."""


def parse_url(url: str, baud: int | None = None):
    """(kind, target, baud): kind is "serial", "lp" or "url" (pyserial URL)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    rate = int(query["baud"][0]) if "baud" in query else baud or DEFAULT_BAUD
    if url.startswith("/") or parts.scheme == "":
        return "serial", url, rate
    if parts.scheme in ("serial", "file"):
        path = parts.path or parts.netloc
        if not path:
            raise ValueError("printer URL without a device path: %r" % url)
        return "serial", path, rate
    if parts.scheme == "lp":
        return "lp", parts.path, rate
    return "url", url, rate


class Printer:
    """Thread-safe: the counter prints while the status bar asks for paper."""

    def __init__(self, url: str, baud: int | None = None, columns: int = 32, status_timeout: float = 0.3):
        self.url = url
        self.kind, self.target, self.baud = parse_url(url, baud)
        self.columns = columns
        self.status_timeout = status_timeout
        self._lock = threading.Lock()
        self.printed = 0

    def _open(self):
        try:
            if self.kind == "lp":
                return _LpPort(self.target)
            if self.kind == "url":
                return serial.serial_for_url(self.target, baudrate=self.baud, timeout=0.05, write_timeout=WRITE_TIMEOUT)
            return serial.Serial(self.target, self.baud, timeout=0.05, write_timeout=WRITE_TIMEOUT)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PrinterError("printer_unavailable", "cannot open %s: %s" % (self.url, exc))

    def document(self) -> escpos.Document:
        return escpos.Document(self.columns)

    def print(self, data: bytes | escpos.Document) -> None:
        """Send one job; raises PrinterError when the printer cannot take it."""
        raw = data.bytes() if isinstance(data, escpos.Document) else bytes(data)
        with self._lock:
            port = self._open()
            try:
                port.write(raw)
                port.flush()
            except (serial.SerialException, OSError) as exc:
                raise PrinterError("printer_unavailable", "%s: %s" % (self.url, exc))
            finally:
                port.close()
            self.printed += 1
        log.info("receipt printed url=%s bytes=%d", self.url, len(raw))

    def status(self) -> dict:
        """{"online", "paper"} from DLE EOT 1 and 4; raises PrinterError when the
        printer does not answer (an lp device cannot: it reports "unknown")."""
        if self.kind == "lp":
            return {"online": None, "paper": None}
        with self._lock:
            port = self._open()
            try:
                printer = self._ask(port, escpos.STATUS_PRINTER)
                paper = self._ask(port, escpos.STATUS_PAPER)
            finally:
                port.close()
        return {"online": not printer & escpos.OFFLINE_BIT, "paper": not paper & escpos.PAPER_OUT_BITS}

    def _ask(self, port, request: bytes) -> int:
        try:
            port.reset_input_buffer()
            port.write(request)
            deadline = time.monotonic() + self.status_timeout
            while time.monotonic() < deadline:
                got = port.read(1)
                if got:
                    return got[0]
        except (serial.SerialException, OSError) as exc:
            raise PrinterError("printer_unavailable", "%s: %s" % (self.url, exc))
        raise PrinterError("printer_unavailable", "%s: no status answer in %.1fs" % (self.url, self.status_timeout))


class _LpPort:
    """/dev/usb/lpN: write-only, no status channel worth trusting."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY)

    def write(self, data):
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def flush(self):
        pass

    def close(self):
        os.close(self.fd)
