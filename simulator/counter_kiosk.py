"""One shop's counter as its clerk sees it, for the demo: the terminal agent
with its kiosk UI as a real process (`python -m terminal_ui`) on simulated
hardware owned by this process (the PN532 emulator and the receipt printer
emulator on pseudo-terminals, a still-image camera), and farmers of that shop
who come to the counter now and then and tap their signed card on the
emulated reader, so a visitor of the demo sees the subject panel appear and
can scan products, sell, print and void like a clerk.
"""

from __future__ import annotations

import logging
import random
import secrets
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from firmware.clerk_pins import pin_hash
from firmware import prices
from firmware.prices import PriceList
from gateway.enforcement.fleet import Credentials
from hardware.pn532.emulated_cards import Ntag21x
from hardware.pn532.emulator import PN532Emulator
from hardware.printer.emulator import PrinterEmulator
from protocols import card as card_format
from protocols.clock import wall_ms
from simulator import lifeline
from simulator.district import District, Shop
from simulator.processes import ROOT, _env, terminal_config_text
from simulator.seeding import counter_toml

log = logging.getLogger(__name__)

CLERK, CLERK_NAME = "clerk1", "李梅"


def start_kiosk(config: Path, log_path: Path, env: dict, timeout: float = 60.0) -> subprocess.Popen:
    """`python -m terminal_ui --config` as a child, once it says READY (it
    serves); its stderr appended to `log_path`."""
    log_file = open(log_path, "ab")
    proc = subprocess.Popen([sys.executable, "-m", "terminal_ui", "--config", str(config)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=log_file, preexec_fn=lifeline.bind)
    ready = threading.Event()

    def read():
        for line in proc.stdout:
            if line.startswith(b"READY"):
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(timeout):
        raise TimeoutError(f"the kiosk did not start in {timeout:.0f} s; see {log_path}")
    return proc


def price_fen(product: dict, pack: dict) -> int:
    """A plausible shelf price, to the half yuan: fertilizer about 2.7 yuan a
    kg (a 50 kg bag of urea 135 yuan), pesticide 3 yuan a pack plus 8 fen a
    gram or millilitre."""
    if product.get("kind") == "fertilizer":
        fen = pack["net"] * 27 // 100
    else:
        fen = 300 + pack["net"] * 8
    return max(50, (fen + 25) // 50 * 50)


def seed_prices(path: Path, catalogue: dict, owner: str) -> None:
    """The demo shop's price list and container deposit (firmware/prices.py),
    as its owner would have typed them in, unless the shop already has one."""
    book = PriceList(path)
    try:
        if book.all():
            return
        now = wall_ms()
        for key, product in sorted(catalogue["products"].items()):
            for spec, pack in sorted(product["packs"].items()):
                book.set(key, spec, price_fen(product, pack), owner, now)
        book.set_deposit(50, owner, now)
    finally:
        book.close()


class CounterKiosk:
    def __init__(self, workdir: Path, district: District, shop: Shop, creds: Credentials, broker_url: str,
                 http: str, ca: Path | None = None):
        """`ca`: the CA of an mqtts:// broker."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.district, self.shop, self.creds = district, shop, creds
        self.broker_url, self.http, self.ca = broker_url, http, ca
        self.url = f"http://{http}/"
        # the clerk's PIN, new for every run of the demo (printed with the URL):
        # a demo kiosk on a visitor's machine is no open door with a known PIN
        self.pin = "%06d" % secrets.randbelow(10 ** 6)
        self.reader = self.printer = self.proc = None
        self._stop = threading.Event()

    def start(self, timeout: float = 60.0) -> "CounterKiosk":
        import cv2

        self.reader = PN532Emulator().start()
        self.printer = PrinterEmulator().start()
        stills = self.workdir / "camera"
        stills.mkdir(exist_ok=True)
        cv2.imwrite(str(stills / "counter.jpg"), np.full((240, 320, 3), 200, np.uint8))
        config = self.workdir / "kiosk.toml"
        ledger = self.workdir / f"{self.shop.terminal}.ledger.db"
        text = terminal_config_text(self.creds, self.broker_url, ledger,
                                    shop=self.shop.id, ca=self.ca) + counter_toml(self.district, clerk=CLERK)
        # the gateway's silence limit is a few real seconds of heartbeats on the virtual clock
        text = text.replace("[uplink]\n", "[uplink]\nheartbeat_s = 1.0\n", 1)
        text += (f'\n[kiosk]\nshop_name = "{self.shop.name}"\nreader = "{self.reader.path}"\n'
                 f'printer = "{self.printer.path}"\ncamera = "file://{stills}/*.jpg?fps=2"\nvoice = false\n'
                 f'http = "{self.http}"\n'
                 f'[[kiosk.clerks]]\nid = "{CLERK}"\nname = "{CLERK_NAME}"\npin_hash = "{pin_hash(CLERK, self.pin)}"\n'
                 'owner = true\n')       # the demo's clerk keeps the shop: the 价格 screen is there to see
        config.write_text(text, "utf-8")
        seed_prices(prices.beside(ledger), self.district.catalogue, CLERK)
        self.proc = start_kiosk(config, self.workdir / "kiosk.log", _env(), timeout)
        return self

    def tap(self, subject_id: str) -> None:
        """The subject's card on the reader's field (NTAG21x with its signed payload)."""
        card = self.district.subject(subject_id).card
        emulated = Ntag21x(model="NTAG215", uid=card.uid)
        for page, data in card_format.ntag_pages(card.payload).items():
            emulated.memory[page * 4:page * 4 + 4] = data
        self.reader.put(emulated)

    def lift(self) -> None:
        self.reader.remove()

    def visitors(self, every_s: float = 40.0, seed: int = 1) -> threading.Thread:
        """Now and then one of the shop's regulars takes the last one's place at
        the counter and taps the card; it stays on the reader until the next."""
        regulars = [s.id for s in self.district.customers(self.shop.id)] or [s.id for s in self.district.subjects]
        rng = random.Random(seed)

        def loop():
            while not self._stop.wait(every_s):
                self.lift()
                if self._stop.wait(1.0):
                    return
                self.tap(rng.choice(regulars))

        thread = threading.Thread(target=loop, name="counter-visitors", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self._stop.set()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        for part in (self.reader, self.printer):
            if part is not None:
                part.stop()
