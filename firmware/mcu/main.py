"""The card-only terminal: `micropython firmware/mcu/main.py --config FILE [--sales -]`.

On a board, main.py runs at boot with the config at /config.json. On the
MicroPython unix port the same code runs against the PN532 emulator
(docs/mcu.md). With `--sales -` it also sells from stdin, one JSON object a
line: {"card": "<UID hex>", "items": [{"product": "...", "packs": N}]}; the
card file with that UID (config `reader.cards`) is put on the emulated reader,
read and verified like a tap, and the sale decided and committed. Two more
kinds of line (docs/mcu.md): {"void": <seq>, "reason": "..."} voids a sale of
this ledger, {"return": "<UID hex>", "codes": ["<label unit code>", ...]}
takes pesticide containers back from that card's holder; on a board, which
has no stdin, the OLED menu's buttons make the same two records through
`counter_record` (cart.py, menu_records.py).

A board sells without stdin: the main loop looks at the reader between its
steps (tap.py), and a card laid on it with goods chosen (scanner, menu) sells
them through the very path a sale line takes (`_sell`); with nothing chosen it
shows the buyer's remaining quota and asks for the goods (quota_screen.py). A
card left lying does not buy again until it has been lifted. It
prints, one line each, on stdout:

    READY <terminal>     the ledger is open and the devices are up
    APPROVED <seq>       a sale committed to the ledger (the clerk may hand over)
    REFUSED <reason>     a refusal committed to the ledger (or ledger_disk_full:
                         nothing could be committed)
    VOIDED <seq>         a void committed to the ledger (its own seq), from a
                         line or the menu
    RETURNED <seq>       a packaging return committed to the ledger, likewise
    ERROR <reason>       a line that is not a sale, or a void or return refused
                         (nothing recorded)

besides the BUZZER, LED and OLED lines of the unix twins. Logs go to stderr.
It keeps running (uploading, syncing) after stdin ends, until it is killed.
"""

import sys


def _paths():
    """firmware/mcu on the unix port: the repository root (for protocols/) and
    micropython-lib where scripts/test.sh put it."""
    here = sys.path[0] if sys.path and sys.path[0] else "."
    root = here.rstrip("/") + "/../.."
    for path in (root, root + "/.venv/micropython-lib"):
        if path not in sys.path:
            sys.path.append(path)


_paths()

import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import select  # noqa: E402
import time  # noqa: E402

import board as _board  # noqa: E402
from cart import Cart  # noqa: E402
import clock  # noqa: E402
import settings  # noqa: E402
from counter import Counter  # noqa: E402
from ledger import Ledger  # noqa: E402
from mqtt import Session, tls_params  # noqa: E402
from protocols import envelope, topics  # noqa: E402
from reader import Reader  # noqa: E402
from sync import ConfigStore  # noqa: E402
from tap import Tap  # noqa: E402
from uplink import Uplink  # noqa: E402


def log(message):
    print("[mcu] " + message, file=sys.stderr)


def _args(argv):
    out = {"config": "/config.json", "sales": None}
    i = 0
    while i < len(argv):
        name = argv[i]
        if name in ("--config", "--sales") and i + 1 < len(argv):
            out[name[2:]] = argv[i + 1]
            i += 2
        else:
            raise settings.ConfigError("usage: main.py --config FILE [--sales -] (unknown argument %r)" % name)
    return out


def _card_files(paths):
    """UID hex -> card file, from the files the config names."""
    out = {}
    for path in paths or []:
        try:
            with open(path) as f:
                out[json.load(f)["uid"].lower()] = path
        except (OSError, ValueError, KeyError) as err:
            raise settings.ConfigError("reader.cards: %s: %s" % (path, err))
    return out


class Terminal:
    def __init__(self, config):
        self.config = config
        t = config["terminal"]
        self.id = t["id"]
        key = bytes.fromhex(t["key"])
        self.board = _board.make(config)
        self.ledger = Ledger(config["ledger"]["dir"], self.id, key,
                             reserve=config["ledger"].get("reserve_kb", 8) * 1024).open()
        self.store = ConfigStore(config["config"]["dir"], self.id, key, log)
        b = config["broker"]
        host, port = topics.parse_broker_url(b["url"])
        u = config.get("uplink", {})
        tls = None
        if topics.broker_uses_tls(b["url"]):
            tls = tls_params(host, b["ca"], b.get("cert"), b.get("key"))
        self.session = Session("terminal-" + self.id, host, port, b.get("username", self.id), b.get("password"),
                               topics.topic(self.id, topics.STATUS), envelope.encode_status(self.id, "offline"),
                               keepalive=u.get("keepalive_s", 30), min_backoff=u.get("min_backoff_s", 0.5),
                               max_backoff=u.get("max_backoff_s", 30), log=log, tls=tls)
        self.uplink = Uplink(self.session, self.ledger, key, self.store.versions, batch=u.get("batch", 8),
                             ack_timeout=u.get("ack_timeout_s", 5.0), heartbeat=u.get("heartbeat_s", 60.0),
                             wall_ms=clock.wall_ms, log=log)
        self.session.subscribe(topics.topic(self.id, topics.CONFIG), self.store.on_message)
        self.store.on_change = lambda name: self.uplink.announce()
        self.session.on_connect = self.uplink.on_connect
        self.reader = Reader(self.board.uart)
        self.counter = Counter(self.id, key, self.ledger, self.store, self.session, self.reader, self.board,
                               clock.wall_ms, config.get("counter", {}), log)
        self.cards = _card_files(config.get("reader", {}).get("cards"))
        self.cart = Cart(self.board.display, config.get("counter", {}).get("menu", ()), self._names,
                         self if self.board.buttons is not None else None)
        self.tap = Tap(self.reader, log)

    def _names(self, products):
        """Product -> name from the synced catalogue (the menu's labels)."""
        try:
            found = self.store.catalogue_for(products) or {}
        except (OSError, ValueError):
            return {}
        out = {}
        for key in found.get("products", {}):
            out[key] = found["products"][key].get("name", key)
        return out

    def choose(self):
        """What the scanner read and the buttons pressed since the last look."""
        if self.board.scanner is not None:
            for line in self.board.scanner.lines():
                self.cart.scan(line)
        if self.board.buttons is not None:
            for button in self.board.buttons.presses():
                self.cart.press(button)

    peak = 0

    def tick(self):
        if self.board.wifi.ensure() and self.session.ensure():
            self.session.poll()
            self.uplink.step()
        self.choose()
        if self.cart.flow is None:   # a void or a return under way reads the card itself
            self.tap.watch(self)
        self._sample()

    def _sample(self):
        """The heap in use, sampled between steps: the figure docs/mcu.md gives
        for an ESP32 without PSRAM (logged after each sale)."""
        used = gc.mem_alloc()
        if used > self.peak:
            self.peak = used

    def sale(self, line):
        try:
            sale = json.loads(line)
            if not isinstance(sale, dict):
                raise ValueError("a line is a JSON object")
            if "void" in sale:
                return self.counter_record("VOIDED", self.counter.void, sale["void"],
                                           sale.get("reason", "clerk_void"))
            if "return" in sale:
                if not isinstance(sale["return"], str):
                    raise ValueError("a return is {\"return\": UID hex, \"codes\": [...]}")
                return self.counter_record("RETURNED", self.counter.take_back, sale["return"], sale.get("codes"),
                                           self.cards.get(sale["return"].lower()))
            if not isinstance(sale.get("card"), str):
                raise ValueError("a sale is {\"card\": UID hex, \"items\": [...]}")
        except ValueError as err:
            print("ERROR sale_line_invalid %s" % err)
            return
        items = sale.get("items")
        if items is None:
            self.choose()   # a code scanned just before the tap belongs to this sale
            items = self.cart.take()   # a tap without items on the line: what the scanner and the menu chose
        self._sell(sale["card"], items, self.cards.get(sale["card"].lower()))

    def _sell(self, card, items, card_file):
        """One sale, from a line or a tap: decided, on flash, then shown,
        signalled and printed. (approved, seq or reason), None after a bug."""
        try:
            approved, what = self.counter.sell(card, items, card_file)
        except Exception as err:   # a bug must not take the ledger's uplink down with it
            sys.print_exception(err, sys.stderr)
            print("ERROR internal_error %r" % (err,))
            return None
        self._sample()
        gc.collect()   # logged before the result line, so whoever reads the result finds it
        log("mem alloc=%d free=%d peak=%d tap_ms=%s" % (gc.mem_alloc(), gc.mem_free(), self.peak,
                                                          self.counter.last_tap_ms))
        print("%s %s" % ("APPROVED" if approved else "REFUSED", what))
        return approved, what

    def counter_record(self, word, action, *args):
        """A void or a packaging return: `word <seq>` once it is on flash,
        `ERROR <reason>` when nothing was recorded. True when recorded."""
        try:
            done, what = action(*args)
        except Exception as err:   # a bug must not take the ledger's uplink down with it
            sys.print_exception(err, sys.stderr)
            print("ERROR internal_error %r" % (err,))
            return False
        self._sample()
        print("%s %s" % (word if done else "ERROR", what))
        return done

    def run(self, sales=None):
        self.board.display.show(["农资终端 " + self.id, "请刷卡 Tap card"])
        if self.cart.entries:
            self.cart.show()
        print("READY " + self.id)
        poll = None
        if sales is not None:
            poll = select.poll()
            poll.register(sales, select.POLLIN)
        while True:
            self.tick()
            if poll is None:
                time.sleep_ms(20)
                continue
            events = poll.poll(20)
            if events:
                line = sales.readline()
                if not line:
                    poll = None     # stdin ended: keep uploading and syncing
                elif line.strip():
                    self.sale(line)


def main(argv):
    # sale and request ids draw on `random`: seeded from the OS, so a restarted
    # terminal never repeats the ids of its previous run
    random.seed(int.from_bytes(os.urandom(4), "little"))
    try:
        args = _args(argv)
        config = settings.load(args["config"])
        for path in config.get("lib", []):
            sys.path.append(path)
        terminal = Terminal(config)
    except settings.ConfigError as err:
        print("error: %s" % err, file=sys.stderr)
        return 2
    terminal.run(sys.stdin if args["sales"] == "-" else None)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]) or 0)
