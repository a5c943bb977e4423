"""One shop in a box for the kiosk UI tests and the benchmark: a real Mosquitto
with per-terminal credentials, the real gateway process (policy, subjects and
the shop loaded with its CLIs), and the terminal agent with its kiosk UI as a
real process (`python -m terminal_ui`) on simulated hardware: the PN532 emulator
and the printer emulator on pseudo-terminals owned by this process, and a
still-image camera. A subject card signed by a test registry key is put on the
reader's field like a farmer's tap; a face is enrolled at the gateway as an
enrollment station does it, and a photo put in front of the camera twin.
The supervision grid is imported, so the subject panel names the village.

Each test builds its own shop (a few seconds): nothing one test sells or
breaks is seen by another. `sell` and `give_back` go through the kiosk's HTTP
API, for tests that need a sale on the ledger without showing how it is made,
as a client of its own (`KioskClient`: its session, CSRF token and Origin, like
the page): its sign-in is its own, so a page must sign in itself afterwards.
`start_agent(pause_before_commit=PATH)` runs the same kiosk through
tests/support/kiosk_failpoints.py, held between every decision and its commit."""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import httpx
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from firmware.clerk_pins import pin_hash
from firmware.voice import Voice
from gateway.enforcement import fleet
from gateway.supervision import grid
from gateway.store import Store, connect
from hardware.pn532.emulated_cards import Ntag21x
from hardware.pn532.emulator import PN532Emulator
from hardware.pn532.poller import REMOVAL_MISSES
from hardware.printer.emulator import PrinterEmulator
from protocols import card as card_format
from simulator import lifeline
from simulator.broker import Mosquitto
from simulator.processes import GatewayProcess, provision_terminals, terminal_config_text, wait_for
from tests.support import quota_fixtures as fx
from tests.support.quota_district import gateway_cli
from tests.support.supervision import GRID, VILLAGE1

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_PASSWORD = "gateway-test-password"
REGISTRY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
REGISTRY_PUB = REGISTRY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
TERMINAL = "T001"
SHOP = "shop-T001"
CLERK, CLERK_NAME = "c1", "李梅"
OWNER, OWNER_NAME = "o1", "张店主"     # may set prices


def new_pin() -> str:
    """A clerk PIN for one shop: six random digits, never a fixed one a test
    (or an attacker reading the tests) could know beforehand."""
    return "%06d" % secrets.randbelow(10 ** 6)

SUBJECTS = [
    {"id": "S-0001", "status": "active", "town": fx.TOWN, "village": VILLAGE1, "name": "王建国",
     "id_number": "330184196503121234", "plots": [{"id": "P1", "crop": "rice", "area_cmu": 1000}]},
    {"id": "S-0002", "status": "active", "town": fx.TOWN, "name": "绿野水稻专业合作社",
     "plots": [{"id": "P1", "crop": "rice", "area_cmu": 5000}]},
    # holds a permit for chlorpyrifos: FACE_ONLY is refused to this card alone for the face only
    {"id": "S-0003", "status": "active", "town": fx.TOWN, "village": VILLAGE1, "name": "陈立新",
     "plots": [{"id": "P1", "crop": "rice", "area_cmu": 1000}],
     "permits": [{"ingredients": ["chlorpyrifos"]}]},
]
UREA_EAN = "6990000000268"                         # 尿素 50 kg bag
IMIDACLOPRID = ("PD20080101", "001")               # 10%吡虫啉可湿性粉剂, normal
RESTRICTED = ("PD20080203", "001")                 # 56%磷化铝片剂, restricted, designated shops only
FACE_ONLY = ("PD20080204", "001")                  # 40%毒死蜱乳油, restricted, any shop, permit + card + face


def label_code(product: str, spec: str, rng: random.Random) -> str:
    """A label QR content (MoA 2579): URL + 32-digit unit code for a PD product."""
    serial = "".join(rng.choice("0123456789") for _ in range(21))
    code = "1" + product[-6:] + "1" + spec + serial
    return "https://trace.example.cn/q?c=" + code


def env() -> dict:
    out = dict(os.environ)
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    out["PYTHONUNBUFFERED"] = "1"
    return out


class KioskClient:
    """One client of the kiosk's HTTP API, as the kiosk's own page is: a
    session cookie from `GET /api/session`, its CSRF token on every change,
    the kiosk's own Origin. A session the kiosk no longer knows (it restarted)
    is replaced once, as the page does."""

    def __init__(self, url: str):
        self.url = url
        self.http = httpx.Client(base_url=url, headers={"Origin": url}, timeout=30)
        self.csrf: str | None = None

    def new_session(self) -> None:
        res = self.http.get("/api/session")
        res.raise_for_status()
        self.csrf = res.json()["csrf"]

    def request(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        for attempt in (1, 2):
            if self.csrf is None:
                self.new_session()
            headers = {} if method in ("GET", "HEAD") else {"X-CSRF-Token": self.csrf}
            res = self.http.request(method, path, json=body, headers=headers)
            if attempt == 1 and res.status_code in (401, 403) and \
                    res.headers.get("content-type", "").startswith("application/json") and \
                    res.json().get("code") in ("session_required", "csrf_token_invalid"):
                self.csrf = None
                continue
            break
        if path == "/api/signin" and res.status_code == 200:
            self.csrf = res.json()["csrf"]          # a sign-in makes a new session
        return res

    def close(self) -> None:
        self.http.close()


class KioskShop:
    def __init__(self, root: Path, deadline_ms: int = 1500):
        self.pin = new_pin()        # the clerk's PIN at this shop
        self.owner_pin = new_pin()  # the owner's
        while self.owner_pin == self.pin:
            self.owner_pin = new_pin()
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = self.root / "gateway.db"
        self.creds = provision_terminals(self.db, [TERMINAL])[0]
        fx.add_shops(self.db, {SHOP: (fx.TOWN, False)})
        conn = connect(self.db)
        try:
            grid.import_grid(conn, GRID)        # village names for the subject panel (东湖村)
        finally:
            conn.close()
        params = self.root / "params.json"
        params.write_text(json.dumps(fx.params()), "utf-8")
        gateway_cli("policy", "import", str(params), "--db", str(self.db))
        gateway_cli("subjects", "import", str(fx.write_jsonl(self.root / "subjects.jsonl", SUBJECTS)),
                    "--db", str(self.db))
        # the key that signs the test cards: the gateway checks each card an authorization shows
        gateway_cli("subjects", "keys", "add", REGISTRY_PUB.hex(), "--db", str(self.db))
        store = Store(self.db)
        passwd, acl = fleet.write_broker_auth(store, self.root / "broker-auth", GATEWAY_PASSWORD)
        store.close()
        self.proc: subprocess.Popen | None = None
        self.broker = self.gateway = self.reader = self.printer = None
        self.cards: dict[str, Ntag21x] = {}
        try:
            self.broker = Mosquitto(self.root / "broker", password_file=passwd, acl_file=acl).start()
            self.gateway = GatewayProcess(self.db, self.broker.url, self.root / "gateway.log",
                                          username=fleet.GATEWAY_USER, password=GATEWAY_PASSWORD).start()
            self.reader = PN532Emulator().start()
            self.printer = PrinterEmulator().start()
        except BaseException:
            self.close()            # what started before the failure stops with it
            raise
        stills = self.root / "camera"
        stills.mkdir(exist_ok=True)
        self.camera_image = stills / "counter.jpg"
        self.show_camera(None)
        self.port: int | None = None    # picked by the system at the first start, kept across restarts
        self.url: str | None = None
        self._client: KioskClient | None = None
        self.ledger = self.root / f"{TERMINAL}.ledger.db"
        self.config = self.root / "terminal.toml"
        self.config.write_text(self.config_text(deadline_ms, stills), "utf-8")

    def config_text(self, deadline_ms: int, stills: Path) -> str:
        text = terminal_config_text(self.creds, self.broker.url, self.ledger, ack_timeout=2.0, shop=SHOP)
        text = text.replace("reserve_mb = 1", "reserve_mb = 0")
        return text + (
            f'\n[counter]\ndeadline_ms = {deadline_ms}\nregistry_keys = ["{REGISTRY_PUB.hex()}"]\nclerk = "{CLERK}"\n'
            f'\n[kiosk]\nshop_name = "塘栖农资店"\nreader = "{self.reader.path}"\nprinter = "{self.printer.path}"\n'
            f'camera = "file://{stills}/*.jpg?fps=2"\nvoice = true\n'
            f'player = ["sh", "-c", "echo \\"$1\\" >> {self.root / "spoken.log"}", "player"]\n'
            f'voice_cache = "{self.root / "voice"}"\ndeposit_fen = 50\nhttp = "127.0.0.1:0"\n'
            f'[[kiosk.clerks]]\nid = "{CLERK}"\nname = "{CLERK_NAME}"\npin_hash = "{pin_hash(CLERK, self.pin)}"\n'
            f'[[kiosk.clerks]]\nid = "{OWNER}"\nname = "{OWNER_NAME}"\npin_hash = "{pin_hash(OWNER, self.owner_pin)}"\n'
            'owner = true\n')

    # -- the agent process

    def start_agent(self, wait: float = 60.0, pause_before_commit: Path | None = None) -> None:
        """`python -m terminal_ui --config` as a child, once it says READY; with
        `pause_before_commit` the same kiosk through the failpoint launcher.
        The first start serves on a port the system picks (a port chosen here
        and bound there could be taken in between); a restart serves on the
        same one, so an open page reconnects."""
        args = ["-m", "terminal_ui", "--config", str(self.config)]
        if self.port is not None:
            args += ["--http", f"127.0.0.1:{self.port}"]
        if pause_before_commit is not None:
            args = ["-m", "tests.support.kiosk_failpoints", "--pause-before-commit", str(pause_before_commit),
                    "--", *args[2:]]
        log_file = open(self.root / "terminal.log", "ab")
        try:
            self.proc = subprocess.Popen([sys.executable, *args], env=env(), cwd=ROOT, stdout=subprocess.PIPE,
                                         stderr=log_file, preexec_fn=lifeline.bind)
        finally:
            log_file.close()      # the child holds its own descriptor
        ready = threading.Event()
        announced = []

        def read(proc):
            for line in proc.stdout:
                if line.startswith(b"READY"):
                    announced.append(line.split()[-1].decode().rstrip("/"))     # READY T001 http://HOST:PORT/
                    ready.set()

        threading.Thread(target=read, args=(self.proc,), daemon=True).start()
        if not ready.wait(wait):
            self.kill_agent()
            raise TimeoutError(f"the kiosk did not start in {wait:.0f} s; see {self.root / 'terminal.log'}")
        self.url = announced[0]
        self.port = int(self.url.rpartition(":")[2])

    @property
    def client(self) -> KioskClient:
        """The harness's own client of the kiosk (what `api`, `state`, `sell` use)."""
        if self._client is None:
            self._client = KioskClient(self.url)
        return self._client

    def kill_agent(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop_agent(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill_agent()

    def state(self) -> dict:
        """The state as the harness's client sees it: the counter once it has
        signed in (`sign_in`), else the public sign-in state."""
        return self.client.request("GET", "/api/state").json()

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        """A clerk's tap on the page, as the page sends it; an error is raised."""
        res = self.client.request(method, path, body)
        if res.status_code != 200:
            raise AssertionError(f"{method} {path}: {res.status_code} {res.text}")
        return res.json()

    # -- the counter driven through its API

    def sign_in(self) -> None:
        self.api("POST", "/api/signin", {"pin": self.pin})

    def serve(self, subject: str) -> None:
        """A fresh tap of the subject's card, until the session shows it."""
        self.lift()
        self.tap(subject)
        wait_for(lambda: (self.state().get("subject") or {}).get("id") == subject, 15, f"{subject} identified")

    def done(self) -> None:
        """Next customer: the card lifted, the session back at idle."""
        self.api("POST", "/api/finish")
        self.lift()

    def sell(self, subject: str, *items) -> dict:
        """Sign in, tap, put `items` in the cart (label or barcode text, or a
        (product, spec) pair), decide; the outcome as the page got it."""
        self.sign_in()
        self.serve(subject)
        for item in items:
            if isinstance(item, str):
                self.api("POST", "/api/scan", {"text": item})
            else:
                self.api("POST", "/api/cart", {"product": item[0], "spec": item[1]})
        outcome = self.api("POST", "/api/checkout")
        self.done()
        return outcome

    def give_back(self, subject: str, *codes: str) -> dict:
        """A packaging return of these label codes, recorded."""
        self.sign_in()
        self.serve(subject)
        self.api("POST", "/api/return/start")
        for code in codes:
            self.api("POST", "/api/return/scan", {"text": code})
        outcome = self.api("POST", "/api/return/commit")
        self.done()
        return outcome

    def wait_synced(self, timeout: float = 60) -> dict:
        """Until the terminal runs the gateway's catalogue, params and subjects."""
        return wait_for(lambda: (lambda s: s if s["status"]["online"] and s["status"]["params"] is not None
                                 and s["status"]["catalogue"] is not None else None)(self.state()),
                        timeout, "kiosk online with synced config", interval=0.2)

    # -- the farmer's card

    def card(self, subject: str, card_no: str | None = None) -> Ntag21x:
        if subject not in self.cards:
            emulated = Ntag21x(model="NTAG215")
            card = card_format.Card(emulated.uid, subject, card_no or f"330113-2025-{len(self.cards) + 1:06d}",
                                    "330113", "2025-01-01", "2030-12-31")
            payload = card_format.issue(card, REGISTRY)
            for page, data in card_format.ntag_pages(payload).items():
                emulated.memory[page * 4:page * 4 + 4] = data
            self.cards[subject] = emulated
        return self.cards[subject]

    def tap(self, subject: str) -> None:
        self.reader.put(self.card(subject))

    def lift(self) -> None:
        """The card taken away, and held away until the agent's poller has
        missed it often enough to call it removed (hardware/pn532/poller.py):
        otherwise a quick re-tap of the same card is no new tap at all."""
        self.reader.remove()
        self.reader.wait_empty_polls(REMOVAL_MISSES + 1)

    def was_spoken(self, text: str, timeout: float = 10.0) -> bool:
        """Whether the agent played this prompt: its player (a shell line in the
        config) logs each WAV it plays, and a prompt's WAV is named by its text."""
        wav = str(Voice(self.root / "voice").cache_path(text))
        log = self.root / "spoken.log"
        try:
            wait_for(lambda: log.exists() and wav in log.read_text().split("\n"), timeout, f"spoken {text}")
        except TimeoutError:
            return False
        return True

    # -- faces

    def enrol_face(self, subject: str, photo: Path) -> dict:
        """What an enrollment station does: the photo through the counter's own
        capture checks and model (`python -m firmware face encode`), then
        `python -m gateway faces import` into the running gateway's database."""
        proc = subprocess.run([sys.executable, "-m", "firmware", "face", "encode", "--subject", subject,
                               "--image", str(photo)], env=env(), cwd=ROOT, capture_output=True, text=True,
                              timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr)
        path = self.root / f"faces-{subject}.jsonl"
        path.write_text(proc.stdout.strip() + "\n", "utf-8")
        return json.loads(gateway_cli("faces", "import", str(path), "--db", str(self.db)).stdout)

    def gallery_subjects(self) -> int:
        """Subjects in the face gallery the terminal runs (its config store's summary)."""
        path = self.ledger.with_name(self.ledger.stem + ".config.db")
        if not path.exists():
            return 0
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=10)
        try:
            row = conn.execute("SELECT content FROM sections WHERE name = 'gallery'").fetchone()
        finally:
            conn.close()
        return json.loads(row[0]).get("subjects", 0) if row else 0

    def show_camera(self, photo: Path | None) -> None:
        """Put a photo in front of the camera twin (None: the empty counter).
        Replaced atomically under the same name: the twin reads the file again
        for every frame, so the next frame is the new picture."""
        image = cv2.imread(str(photo), cv2.IMREAD_COLOR) if photo else np.full((240, 320, 3), 200, np.uint8)
        tmp = self.camera_image.with_name(".next.jpg.tmp")
        ok, data = cv2.imencode(".jpg", image)
        assert ok, photo
        tmp.write_bytes(data.tobytes())
        os.replace(tmp, self.camera_image)

    # -- the broker

    def broker_down(self) -> None:
        self.broker.kill()

    def broker_up(self) -> None:
        self.broker.start()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self.kill_agent()
        for part, stop in ((self.gateway, "kill"), (self.broker, "kill"), (self.reader, "stop"),
                           (self.printer, "stop")):
            if part is not None:
                getattr(part, stop)()


def sale_records(ledger: Path) -> list[dict]:
    from firmware.ledger import export_lines
    return [json.loads(text) for text in export_lines(ledger)] if ledger.exists() else []
