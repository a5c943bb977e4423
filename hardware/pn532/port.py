"""The serial port under the PN532 link, named by a URL and reopened after an unplug.

URLs follow the configuration style: a plain device path (`/dev/ttyS0`,
`/dev/serial0`, `/dev/ttyUSB0`, or a pty slave from the emulator),
`serial:///dev/ttyAMA0?baud=115200`, or any pyserial URL (`loop://`, `spy://...`,
`socket://host:port`) passed to `serial_for_url`. Field readers disappear (a USB
adapter pulled out, a loose jumper browning out the module); the port closes itself
on the first I/O error so the next call can open the same path again.
"""

import logging
from urllib.parse import parse_qs, urlsplit

import serial

try:
    from termios import error as _TermiosError  # tcflush on a vanished pty/tty raises this
except ImportError:  # not POSIX
    class _TermiosError(Exception):
        pass

IO_ERRORS = (serial.SerialException, OSError, _TermiosError)

from hardware.pn532.errors import ReaderDisconnected, ReaderTimeout

log = logging.getLogger(__name__)

DEFAULT_BAUD = 115200
# Each read waits at most this long, so every wait in the link re-checks its deadline
# (and the line-quiet rule) without spinning.
READ_SLICE = 0.01
WRITE_TIMEOUT = 1.0


def parse_url(url, baud=None):
    """(pyserial target, baud, via_url) for a port URL; baud in the URL wins over `baud`."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file") or url.startswith("/"):
        return (parts.path if parts.scheme else url), baud or DEFAULT_BAUD, False
    if parts.scheme == "serial":
        query = parse_qs(parts.query)
        rate = int(query["baud"][0]) if "baud" in query else baud or DEFAULT_BAUD
        path = parts.path or parts.netloc
        if not path:
            raise ValueError("serial URL without a device path: %r" % url)
        return path, rate, False
    return url, baud or DEFAULT_BAUD, True


class Port:
    """A pyserial port that turns I/O failures into ReaderDisconnected and can reopen."""

    def __init__(self, url, baud=None):
        self.url = url
        self.target, self.baud, self._via_url = parse_url(url, baud)
        self._serial = None
        self.opened = 0  # how many times the port was opened; the reader re-initialises on change

    @property
    def is_open(self):
        return self._serial is not None

    def open(self):
        if self._serial is not None:
            return
        try:
            if self._via_url:
                ser = serial.serial_for_url(self.target, baudrate=self.baud, timeout=READ_SLICE,
                                            write_timeout=WRITE_TIMEOUT)
            else:
                ser = serial.Serial(self.target, self.baud, timeout=READ_SLICE,
                                    write_timeout=WRITE_TIMEOUT, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ReaderDisconnected("cannot open %s: %s" % (self.url, exc))
        self._serial = ser
        self.opened += 1
        log.info("pn532 port opened url=%s baud=%d", self.url, self.baud)

    def close(self):
        ser, self._serial = self._serial, None
        if ser is not None:
            try:
                ser.close()
            except IO_ERRORS:
                pass

    def _lost(self, exc):
        log.warning("pn532 port lost url=%s error=%s", self.url, exc)
        self.close()
        return ReaderDisconnected("%s: %s" % (self.url, exc))

    def _require(self):
        if self._serial is None:
            raise ReaderDisconnected("%s is not open" % self.url)
        return self._serial

    def write(self, data):
        ser = self._require()
        try:
            ser.write(data)
        except serial.SerialTimeoutException as exc:
            raise ReaderTimeout("write to %s timed out: %s" % (self.url, exc))
        except IO_ERRORS as exc:
            raise self._lost(exc)

    def read(self):
        """What has arrived, waiting at most READ_SLICE for the first byte."""
        ser = self._require()
        try:
            return ser.read(max(1, ser.in_waiting))
        except IO_ERRORS as exc:
            raise self._lost(exc)

    def discard_input(self):
        ser = self._require()
        try:
            ser.reset_input_buffer()
        except IO_ERRORS as exc:
            raise self._lost(exc)

