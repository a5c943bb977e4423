"""The conformance kit (`python -m protocols conformance`) is real: it passes
the project's own Pi terminal on the broker configuration the project
generates (TLS, per-terminal users and ACLs), with a real broker restart and
a real kill -9 of the terminal, and it fails terminals that make the classic
mistakes (tests/support/broken_terminals.py). The kit runs as the command a
vendor would type; the tests read its table and its exit status."""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.enforcement import pki
from gateway.store import Store
from simulator.broker import Mosquitto
from simulator import lifeline
from simulator.processes import TerminalProcess, provision_terminals, terminal_config_text
from tests.support.conformance_control import Control
from tests.support.conformance_terminal import TerminalUnderTest

ROOT = Path(__file__).resolve().parents[1]
GATEWAY_PASSWORD = "conformance-test-password"
ACK_TIMEOUT = 3.0
ROW = re.compile(r"^\W*([a-z][a-z-]+)\s+│[^│]*│\s+\S+ (PASS|FAIL|SKIP)\s+│\s*(.*?)\s*│?$")


class Bench:
    """A broker on the generated configuration, one terminal under test, and
    the command line that runs the kit against it."""

    def __init__(self, root: Path, broken: str | None = None, runner: str = "counter"):
        self.root = root
        db = root / "gateway.db"
        (self.creds,) = provision_terminals(db, ["T001"])
        authority = pki.Pki(root / "pki")
        authority.init()
        store = Store(db)
        try:
            self.broker = Mosquitto.generated(root / "broker", store, GATEWAY_PASSWORD, pki_dir=authority.dir)
        finally:
            store.close()
        self.broker.start()
        config = root / "T001.toml"
        config.write_text(terminal_config_text(self.creds, self.broker.tls_url, root / "T001.ledger.db",
                                               ack_timeout=ACK_TIMEOUT, batch=20, ca=self.broker.ca))
        if runner == "counter":
            self.terminal = TerminalUnderTest(config, root / "T001.log", rate=2.0, broken=broken)
        elif runner == "simulator-sell":
            self.terminal = ShippedTerminal(TerminalProcess(config, root / "T001.log", rate=2.0))
        else:
            self.terminal = ShippedTerminal(FirmwareRun(config, root / "T001.log"))
        self.key_file = root / "T001.key"
        self.key_file.write_text(self.creds.key_hex + "\n")
        self.password_file = root / "kit.password"
        self.password_file.write_text(GATEWAY_PASSWORD + "\n")
        self.control = Control(root / "control.sock", {"restart-broker": self.broker.restart,
                                                       "restart-terminal": self.terminal.restart})

    def kit(self, *extra: str, restarts: bool = True, timeout: float = 600):
        command = [sys.executable, "-m", "protocols", "conformance", "--broker", self.broker.tls_url,
                   "--terminal", "T001", "--key-file", str(self.key_file), "--ca", str(self.broker.ca),
                   "--password-file", str(self.password_file), "--ack-timeout", str(ACK_TIMEOUT), "--seed", "7",
                   *extra]
        if restarts:
            command += ["--restart-broker", self.control.command("restart-broker"),
                        "--restart-terminal", self.control.command("restart-terminal")]
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "COLUMNS": "200"})
        return proc, table(proc.stdout)

    def close(self) -> None:
        self.control.close()
        self.terminal.kill()
        self.broker.kill()


class FirmwareRun:
    """`python -m firmware run`: the shipped agent, selling nothing."""

    def __init__(self, config: Path, log_path: Path):
        self.config, self.log_path, self.proc = config, log_path, None

    def start(self) -> "FirmwareRun":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "firmware", "run", "--config", str(self.config)],
                                         cwd=ROOT, stdout=subprocess.PIPE, stderr=log, preexec_fn=lifeline.bind)
        line = self.proc.stdout.readline().decode()
        assert line.startswith("READY"), f"firmware run did not start; see {self.log_path}"
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class ShippedTerminal:
    """A shipped command line as the terminal under test, restarted by kill -9."""

    def __init__(self, process):
        self.process = process

    def start(self):
        self.process.start()
        return self

    def kill(self) -> None:
        self.process.kill()

    def restart(self) -> None:
        self.process.kill()
        self.process.start()


def table(text: str) -> dict:
    rows = {}
    for line in text.splitlines():
        match = ROW.match(line.strip())
        if match:
            rows[match.group(1)] = (match.group(2), match.group(3))
    return rows


@pytest.fixture
def bench(tmp_path):
    made = []

    def make(broken=None, runner="counter"):
        b = Bench(tmp_path, broken, runner)
        made.append(b)
        b.terminal.start()
        return b

    yield make
    for b in made:
        b.close()


@pytest.mark.slow
def test_the_project_s_pi_terminal_passes_every_scenario(bench):
    b = bench()
    report = b.root / "report.json"
    proc, rows = b.kit("--json", str(report))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(report.read_text())["results"]
    assert {r["scenario"]: r["outcome"].upper() for r in results} == {name: row[0] for name, row in rows.items()}
    assert all(r["evidence"].startswith(rows[r["scenario"]][1]) for r in results)   # the table folds long lines
    from protocols.conformance_scenarios import NAMES
    assert set(rows) == set(NAMES) | {"whole-run"}, proc.stdout
    assert all(outcome == "PASS" for outcome, _ in rows.values()), proc.stdout
    assert b.control.done == ["restart-broker", "restart-terminal"]   # the restarts really happened


UPLINK_SCENARIOS = ["acks-withheld", "no-ack-backoff", "acks-duplicated", "acks-out-of-order", "ack-beyond-head", "hole-reported",
                    "forged-acks", "broker-restart", "terminal-restart"]
CONFIG_SCENARIOS = ["config-chunks", "config-repeated", "config-bad-mac"]


@pytest.mark.slow
def test_python_m_simulator_sell_passes_every_uplink_and_config_scenario(bench):
    """The shipped agent as `python -m simulator sell` runs it (records written
    without a counter, so no authorization requests: the auth-* scenarios
    need a terminal that asks, as the test above does)."""
    b = bench(runner="simulator-sell")
    proc, rows = b.kit("--scenarios", ",".join(UPLINK_SCENARIOS + CONFIG_SCENARIOS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [name for name, (outcome, _) in rows.items() if outcome == "PASS"] == UPLINK_SCENARIOS + CONFIG_SCENARIOS \
        + ["whole-run"], proc.stdout


@pytest.mark.slow
def test_python_m_firmware_run_passes_the_config_scenarios(bench):
    """`python -m firmware run`, the shipped agent selling nothing: the kit
    starts on its online status, and its config sync conforms."""
    b = bench(runner="firmware-run")
    proc, rows = b.kit("--scenarios", ",".join(CONFIG_SCENARIOS), restarts=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {name: outcome for name, (outcome, _) in rows.items()} == dict.fromkeys(CONFIG_SCENARIOS + ["whole-run"],
                                                                                 "PASS"), proc.stdout


@pytest.mark.slow
def test_a_terminal_that_moves_its_watermark_on_puback_fails(bench):
    b = bench("puback-watermark")
    proc, rows = b.kit("--scenarios", "acks-withheld,auth-answered", restarts=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    outcome, evidence = rows["acks-withheld"]
    assert outcome == "FAIL" and "no re-send" in evidence, proc.stdout
    assert rows["auth-answered"][0] == "PASS", proc.stdout   # the rest of it works: the kit singles out the fault


@pytest.mark.slow
def test_a_terminal_that_reuses_a_seq_after_a_restart_fails(bench):
    b = bench("seq-reuse")
    proc, rows = b.kit("--scenarios", "acks-withheld,terminal-restart")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert rows["acks-withheld"][0] == "PASS", proc.stdout
    outcome, evidence = rows["terminal-restart"]
    assert outcome == "FAIL" and "seq_reused" in evidence, proc.stdout
    assert rows["whole-run"][0] == "FAIL", proc.stdout


@pytest.mark.slow
def test_a_terminal_that_never_checks_answer_and_config_macs_fails(bench):
    b = bench("unchecked-macs")
    proc, rows = b.kit("--scenarios", "auth-answered,auth-bad-mac,config-chunks,config-bad-mac", restarts=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert rows["auth-answered"][0] == "PASS" and rows["config-chunks"][0] == "PASS", proc.stdout
    assert rows["auth-bad-mac"][0] == "FAIL" and "bad MAC was used" in rows["auth-bad-mac"][1], proc.stdout
    assert rows["config-bad-mac"][0] == "FAIL" and "was accepted" in rows["config-bad-mac"][1], proc.stdout


def test_a_restart_scenario_without_its_command_is_not_run_and_says_so(bench):
    b = bench()
    proc, rows = b.kit("--scenarios", "broker-restart,terminal-restart", restarts=False, timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert rows["broker-restart"] == ("SKIP", "not run: give --restart-broker CMD")
    assert b.control.done == []


def test_bad_usage_is_refused_before_anything_is_sent(tmp_path):
    key = tmp_path / "key"
    key.write_text("not hex")
    proc = subprocess.run([sys.executable, "-m", "protocols", "conformance", "--broker", "mqtt://127.0.0.1:1",
                           "--terminal", "T001", "--key-file", str(key)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "hex digits" in proc.stderr
    key.write_text("00" * 32)
    proc = subprocess.run([sys.executable, "-m", "protocols", "conformance", "--broker", "mqtt://127.0.0.1:1",
                           "--terminal", "T001", "--key-file", str(key), "--scenarios", "nope"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown scenario nope" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "protocols", "conformance", "--broker", "mqtt://127.0.0.1:1",
                           "--terminal", "T001", "--key-file", str(key), "--wait", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "could not connect to mqtt://127.0.0.1:1 as gateway" in proc.stderr


def test_the_kit_is_the_gateway_s_side_rebuilt_from_protocols_alone():
    """The point of the kit: the spec and `protocols` are enough. It imports
    neither the gateway nor the firmware, and paho only in its own modules."""
    for path in sorted((ROOT / "protocols").glob("*.py")):
        tree = ast.parse(path.read_text("utf-8"))
        names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
        names |= {node.module.split(".")[0] for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
        assert not names & {"gateway", "firmware", "simulator", "hardware", "terminal_ui"}, path
        if "paho" in names:
            assert path.name.startswith("conformance"), path
