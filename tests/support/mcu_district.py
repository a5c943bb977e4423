"""A district for the MicroPython terminal's end-to-end tests: a real Mosquitto
with per-terminal credentials and ACLs, the real gateway as an OS process, the
PN532 emulator with its card socket as a process, and the card-only terminal
as a real MicroPython process (`micropython firmware/mcu/main.py --config FILE
--sales -`), each of which a test may kill and start again.

The terminal is provisioned with `python -m gateway terminal add` and its
config written as docs/mcu.md describes; subjects, the policy and the
registry's key are loaded with the gateway's own CLIs, as an operator would."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

from gateway.enforcement import fleet
from gateway.store import Store
from simulator.broker import Mosquitto
from simulator.mcu_fleet import McuTerminal, ledger_records
from simulator.netem import Link
from simulator.processes import GatewayProcess, wait_for
from tests.support import mcu
from tests.support import quota_fixtures as fx

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_PASSWORD = "gateway-test-password"


def gateway_cli(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def provision(db: Path, terminal: str, shop: str) -> dict:
    """`gateway terminal add`: the credentials it prints, as a dict."""
    return tomllib.loads(gateway_cli("terminal", "--db", str(db), "add", terminal, "--shop", shop))


class McuDistrict:
    def __init__(self, root: Path, name: str = "M001", subjects: dict[str, int] | None = None,
                 deadline_ms: int = 1500, ack_timeout: float = 2.0, heap: str | None = None,
                 tls: str | None = None, menu: list[str] | None = None, main: Path | None = None,
                 via_link: bool = False, carded: list[str] | None = None):
        """`carded`: the subjects given a card (default every one of
        `subjects`; a district of thousands names the few a test taps).
        `tls`: None for a plain listener; "password" or "cert" for the
        generated configuration's TLS listeners (a throwaway CA for the run),
        with the broker password or a client certificate (CN = terminal id).
        `via_link`: the terminal reaches the broker through `self.link`
        (simulator/netem.py), the shop's network a test can cut."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = self.root / "gateway.db"
        self.name = name
        self.shop = f"shop-{name}"
        self.creds = provision(self.db, name, self.shop)
        fx.add_shops(self.db, {self.shop: (fx.TOWN, False)})
        params = self.root / "params.json"
        params.write_text(json.dumps(fx.params()), "utf-8")
        gateway_cli("policy", "import", str(params), "--db", str(self.db))
        self.subjects = subjects or {"S-M-0001": 1000}
        subjects_file = fx.write_jsonl(self.root / "subjects.jsonl", fx.subjects(self.subjects))
        gateway_cli("subjects", "import", str(subjects_file), "--db", str(self.db))
        gateway_cli("subjects", "keys", "add", fx.registry_public_hex(), "--db", str(self.db))
        store = Store(self.db)
        tls_files = {}
        try:
            if tls:
                from gateway.enforcement import pki
                authority = pki.Pki(self.root / "pki")
                authority.init()
                self.broker = Mosquitto.generated(self.root / "broker", store, GATEWAY_PASSWORD, pki_dir=authority.dir)
                url = self.broker.tls_url if tls == "password" else self.broker.cert_url
                tls_files = {"ca": str(self.broker.ca)}
                if tls == "cert":
                    issued = authority.issue(name)
                    tls_files.update(cert=str(issued.cert), key=str(issued.key))
            else:
                passwd, acl = fleet.write_broker_auth(store, self.root / "broker-auth", GATEWAY_PASSWORD)
                self.broker = Mosquitto(self.root / "broker", password_file=passwd, acl_file=acl)
                url = None
        finally:
            store.close()
        self.broker.start()
        url = url or self.broker.url
        self.link = None
        if via_link:
            parts = urlsplit(url)
            self.link = Link("127.0.0.1", parts.port, scheme=parts.scheme).start()
            url = self.link.url
        gateway_url = self.broker.tls_url if tls else self.broker.url
        self.gateway = GatewayProcess(self.db, gateway_url, self.root / "gateway.log",
                                      username=fleet.GATEWAY_USER, password=GATEWAY_PASSWORD,
                                      ca=self.broker.ca if tls else None)
        self.field = mcu.FieldProcess(self.root / "pn532", self.root / "field.log").start()
        self.cards: dict[str, str] = {}   # subject -> UID hex
        self.card_files: dict[str, Path] = {}
        card_files = []
        for subject in (self.subjects if carded is None else carded):
            path, uid = mcu.card_file(self.root, subject)
            self.cards[subject] = uid
            self.card_files[subject] = path
            card_files.append(str(path))
        self.scanner = self.root / "scanner.txt"   # the label scanner's twin: a test appends codes
        self.buttons = self.root / "buttons.txt"   # the OLED menu's buttons: NEXT / OK lines
        self.config = self.root / f"{name}.json"
        self.config.write_text(json.dumps({
            "terminal": {"id": name, "key": self.creds["terminal"]["key"], "shop": self.shop},
            "broker": dict({"url": url, "username": self.creds["broker"]["username"],
                            "password": self.creds["broker"]["password"]}, **tls_files),
            "uplink": {"batch": 8, "ack_timeout_s": ack_timeout, "heartbeat_s": 30, "keepalive_s": 10},
            "counter": dict({"deadline_ms": deadline_ms, "registry_keys": [fx.registry_public_hex()], "clerk": "c1"},
                            **({"menu": menu} if menu else {})),
            "ledger": {"dir": str(self.root / "flash" / "ledger"), "reserve_kb": 8},
            "config": {"dir": str(self.root / "flash" / "config")},
            "reader": {"port": str(self.root / "pn532"), "control": self.field.control, "cards": card_files,
                       "scanner": str(self.scanner), "buttons": str(self.buttons)},
        }, indent=1), "utf-8")
        self.terminal = McuTerminal(self.config, self.root / f"{name}.log", heap=heap, main=main)

    def start(self) -> "McuDistrict":
        self.gateway.start().wait_subscribed()
        self.terminal.start()
        return self

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
        self.terminal.kill()
        self.gateway.kill()
        self.broker.kill()
        self.field.stop()

    # -- the counter's devices

    def scan(self, *codes: str) -> None:
        """What the label scanner reads, one code a line."""
        with open(self.scanner, "a", encoding="utf-8") as f:
            f.write("".join(code + "\r\n" for code in codes))

    def press(self, *buttons: str) -> None:
        with open(self.buttons, "a", encoding="utf-8") as f:
            f.write("".join(button + "\n" for button in buttons))

    def hold_card(self, subject: str) -> None:
        """The farmer's card laid on the emulated reader (and left there: `take_card`)."""
        self.field.command(f"PUT {self.card_files[subject]}")

    def take_card(self) -> None:
        self.field.command("REMOVE")

    def oled(self) -> list[str]:
        """What the OLED showed so far, one screen a string (lines joined with |)."""
        return [line[len("OLED "):] for line in self.terminal.lines if line.startswith("OLED ")]

    def counter_line(self, line: dict, timeout: float = 30) -> str:
        """A void or return line on the terminal's stdin; its VOIDED, RETURNED
        or ERROR line."""
        words = ("VOIDED", "RETURNED", "ERROR")
        before = len(self.terminal.lines)
        self.terminal.proc.stdin.write((json.dumps(line) + "\n").encode())
        self.terminal.proc.stdin.flush()
        return wait_for(lambda: next((x for x in self.terminal.lines[before:] if x.split()[:1] and
                                      x.split()[0] in words), None), timeout, "the terminal's answer to %r" % line)

    # -- observing

    def quota_sale(self, seq: int) -> dict | None:
        """The gateway's quota row for this terminal's sale `seq` (gateway/enforcement/quota.py):
        what it applied and the void that gave it back, once the follower ran."""
        conn = sqlite3.connect(self.db.resolve().as_uri() + "?mode=ro", uri=True, timeout=30)
        try:
            row = conn.execute("SELECT applied, voided_by FROM quota_sales WHERE terminal = ? AND seq = ?",
                               [self.name, seq]).fetchone()
        except sqlite3.OperationalError:
            row = None
        finally:
            conn.close()
        return {"applied": json.loads(row[0]), "voided_by": row[1]} if row else None

    @property
    def ledger_dir(self) -> Path:
        return self.root / "flash" / "ledger"

    def ledger_lines(self) -> list[dict]:
        """The terminal's ledger records, torn pieces skipped (as the firmware reads it)."""
        return [json.loads(text) for text in ledger_records(self.ledger_dir)]

    def ledger_state(self) -> dict:
        path = self.ledger_dir / "ledger.state"
        return json.loads(path.read_text()) if path.exists() else {}

    def stored(self) -> list[dict]:
        """The terminal's records as the gateway stored them, in seq order."""
        conn = sqlite3.connect(self.db.resolve().as_uri() + "?mode=ro", uri=True, timeout=30)
        try:
            rows = conn.execute("SELECT record FROM records WHERE terminal = ? ORDER BY seq", [self.name]).fetchall()
        except sqlite3.OperationalError:   # before the gateway made its tables
            rows = []
        finally:
            conn.close()
        return [json.loads(text) for (text,) in rows]

    def retained_status(self, timeout: float = 5.0) -> dict | None:
        """The terminal's retained status (online with versions, or its last
        will), read as the gateway's broker user."""
        import threading

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from protocols import envelope, topics
        got: list[bytes] = []
        done = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="probe-status", protocol=mqtt.MQTTv311)
        client.username_pw_set(fleet.GATEWAY_USER, GATEWAY_PASSWORD)
        client.on_connect = lambda c, u, f, rc, p: c.subscribe(topics.topic(self.name, topics.STATUS), qos=1)

        def on_message(c, u, message):
            if message.retain:
                got.append(message.payload)
                done.set()
        client.on_message = on_message
        client.connect("127.0.0.1", self.broker.port)
        client.loop_start()
        try:
            done.wait(timeout)
        finally:
            client.loop_stop()
            client.disconnect()
        return envelope.decode_status(got[0]) if got else None

    def wait_config(self, timeout: float = 60) -> None:
        wanted = ("catalogue", "params", "subjects", "balances", "revocations", "shop")
        config = self.root / "flash" / "config"
        wait_for(lambda: all((config / f"{name}.json").exists() for name in wanted), timeout,
                 "the terminal's config synced")

    def wait_acked(self, timeout: float = 60) -> None:
        def done():
            head = len(self.ledger_lines())
            return head and self.ledger_state().get("acked") == self.ledger_lines()[-1]["seq"]
        wait_for(done, timeout, "every ledger record acknowledged", interval=0.2)

    def assert_exactly_once(self) -> None:
        """Every record of the ledger is stored at the gateway once and unchanged,
        and every sale reported approved is among them."""
        ledger = self.ledger_lines()
        stored = [r for r in self.stored() if r["terminal"] == self.name]
        assert [r["seq"] for r in stored] == sorted({r["seq"] for r in stored}), "a seq stored twice"
        assert stored == ledger, f"ledger {len(ledger)} records, gateway {len(stored)}"
        sales = {r["seq"] for r in ledger if r["type"] == "sale"}
        missing = set(self.terminal.approved) - sales
        assert not missing, f"approved sales missing: {sorted(missing)}"
