"""The receipt printer's simulated twin: a thermal printer on a pseudo-terminal
pair (os.openpty). The driver opens the pty's slave side exactly as it opens
/dev/ttyUSB0; the emulator decodes every byte with the shared ESC/POS decoder,
so a test reads the receipt back as text and QR payloads, and keeps the raw
bytes for tests that assert them exactly. It answers the real-time status
requests (DLE EOT) the way a printer does, including "paper out" on demand.

Given `out_dir`, each receipt's text (and QR payloads) is also written there as
it is cut, for a person watching a demo.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
import tty
from pathlib import Path

from hardware.printer import escpos

log = logging.getLogger(__name__)


class PrinterEmulator:
    def __init__(self, out_dir: str | Path | None = None):
        self.decoder = escpos.Decoder()
        self.receipts: list[escpos.Receipt] = []
        self.raw = bytearray()
        self.paper = True
        self.out_dir = Path(out_dir) if out_dir else None
        self._cond = threading.Condition()
        self._thread = None
        self._running = False

    def start(self) -> "PrinterEmulator":
        master, slave = os.openpty()
        tty.setraw(slave)
        self._master, self._slave = master, slave
        self.path = os.ttyname(slave)
        self._wake_r, self._wake_w = os.pipe()
        self._running = True
        self._thread = threading.Thread(target=self._serve, name="printer-emulator", daemon=True)
        self._thread.start()
        log.info("printer emulator started path=%s", self.path)
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._running = False
        os.write(self._wake_w, b"x")
        self._thread.join(5)
        self._thread = None
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def wait_receipt(self, count: int = 1, timeout: float = 5.0) -> escpos.Receipt:
        """The `count`-th receipt cut since start, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.receipts) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no receipt #%d after %.1fs (have %d)" % (count, timeout, len(self.receipts)))
                self._cond.wait(left)
            return self.receipts[count - 1]

    def _serve(self) -> None:
        master = self._master
        while self._running:
            try:
                readable, _, _ = select.select([master, self._wake_r], [], [], 0.5)
            except (OSError, ValueError):
                return
            if self._wake_r in readable:
                os.read(self._wake_r, 64)
            if master not in readable:
                continue
            try:
                data = os.read(master, 4096)
            except OSError:
                # the slave side was closed by the driver (one job done): on Linux
                # the master reads EIO until the next open; wait for it
                time.sleep(0.005)
                continue
            if data:
                self._received(master, data)

    def _received(self, master, data: bytes) -> None:
        with self._cond:
            self.raw += data
            before = len(self.decoder.status_requests)
            done = self.decoder.feed(data)
            answers = bytes(self._status(n) for n in self.decoder.status_requests[before:])
            for receipt in done:
                self.receipts.append(receipt)
                self._save(receipt, len(self.receipts))
            self._cond.notify_all()
        if answers:
            os.write(master, answers)

    def _status(self, n: int) -> int:
        if n == 4:
            return escpos.STATUS_BASE | (0 if self.paper else escpos.PAPER_OUT_BITS)
        if n == 1:
            return escpos.STATUS_BASE | (0 if self.paper else escpos.OFFLINE_BIT)
        return escpos.STATUS_BASE

    def _save(self, receipt: escpos.Receipt, number: int) -> None:
        if self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        text = receipt.text + "\n" + "".join("QR " + q + "\n" for q in receipt.qr)
        tmp = self.out_dir / (".receipt-%04d.txt" % number)
        tmp.write_text(text, "utf-8")
        tmp.rename(self.out_dir / ("receipt-%04d.txt" % number))
