"""The card-only MicroPython terminal passes the project's conformance kit
(`python -m protocols conformance`, docs/protocol.md "Conformance kit"): the
kit plays the gateway on a real Mosquitto (the generated configuration, its
plain listener; TLS is covered in tests/test_mcu_terminal.py) against `micropython firmware/mcu/main.py`
selling every half second through its emulated reader, with a real broker
restart and a real kill -9 of the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from gateway.store import Store
from simulator.broker import Mosquitto
from simulator.mcu_fleet import FieldProcess, McuTerminal, config_json
from simulator.processes import provision_terminals
from tests.support import mcu
from tests.support import quota_fixtures as fx
from tests.support.conformance_control import Control
from tests.test_conformance import table

GATEWAY_PASSWORD = "conformance-test-password"
ACK_TIMEOUT = 3.0


class Seller:
    """A sale line every `interval` seconds to whichever process is the terminal now."""

    def __init__(self, terminal: McuTerminal, uid: str, interval: float = 0.5):
        self.terminal, self.uid, self.interval = terminal, uid, interval
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self._stop.wait(self.interval):
            try:
                self.terminal.send(self.uid, [{"product": fx.UREA[0], "packs": 1}])
            except (BrokenPipeError, OSError, AttributeError):
                pass   # between a kill and the restart

    def stop(self):
        self._stop.set()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_micropython_terminal_passes_every_scenario_of_the_conformance_kit(tmp_path):
    db = tmp_path / "gateway.db"
    (creds,) = provision_terminals(db, ["M001"])
    store = Store(db)
    try:
        broker = Mosquitto.generated(tmp_path / "broker", store, GATEWAY_PASSWORD)
    finally:
        store.close()
    broker.start()
    field = FieldProcess(tmp_path / "pn532", tmp_path / "field.log").start()
    card, uid = mcu.card_file(tmp_path, "S-K-0001")
    config = tmp_path / "M001.json"
    config.write_text(config_json(creds, broker.url, tmp_path, fx.registry_public_hex(), field, [card],
                                  ack_timeout=ACK_TIMEOUT), "utf-8")
    terminal = McuTerminal(config, tmp_path / "M001.log")

    def restart_terminal():
        terminal.kill()
        terminal.start()

    control = Control(tmp_path / "control.sock", {"restart-broker": broker.restart,
                                                  "restart-terminal": restart_terminal})
    (tmp_path / "M001.key").write_text(creds.key_hex + "\n")
    (tmp_path / "kit.password").write_text(GATEWAY_PASSWORD + "\n")
    seller = None
    try:
        terminal.start()
        seller = Seller(terminal, uid)
        proc = subprocess.run(
            [sys.executable, "-m", "protocols", "conformance", "--broker", broker.url, "--terminal", "M001",
             "--key-file", str(tmp_path / "M001.key"), "--password-file", str(tmp_path / "kit.password"),
             "--ack-timeout", str(ACK_TIMEOUT), "--seed", "7",
             "--restart-broker", control.command("restart-broker"),
             "--restart-terminal", control.command("restart-terminal")],
            cwd=mcu.ROOT, capture_output=True, text=True, timeout=540, env={**os.environ, "COLUMNS": "200"})
        rows = table(proc.stdout)
        failed = {name: row for name, row in rows.items() if row[0] != "PASS"}
        assert proc.returncode == 0 and not failed, proc.stdout + proc.stderr
        assert control.done == ["restart-broker", "restart-terminal"]
    finally:
        if seller:
            seller.stop()
        time.sleep(0)
        control.close()
        terminal.kill()
        field.stop()
        broker.kill()
