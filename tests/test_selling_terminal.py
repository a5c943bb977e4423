"""The synthetic counter the fault drills sell through (`python -m simulator
sell`) and its absence from the shipped terminal: a drill may compare ledgers
only once the agent has confirmed it stopped selling, and a shop's terminal
has no way to sell by itself."""

import json
import signal
import subprocess
import sys

from firmware.ledger import export_lines
from gateway.enforcement import fleet
from simulator.processes import ROOT, TerminalProcess, _env, terminal_config_text, wait_for

KEY = "ab" * 32


def creds(name="T001") -> fleet.Credentials:
    return fleet.Credentials(name, KEY, "pw")


def write_config(tmp_path, name="T001"):
    """An agent whose broker is a closed port: it sells offline, which is all
    these tests need."""
    config = tmp_path / f"{name}.toml"
    config.write_text(terminal_config_text(creds(name), "mqtt://127.0.0.1:9", tmp_path / f"{name}.ledger.db"))
    return config


def test_no_sale_is_reported_after_the_agent_confirms_it_stopped_selling(tmp_path):
    terminal = TerminalProcess(write_config(tmp_path), tmp_path / "t.log", rate=200)
    terminal.start()
    try:
        wait_for(lambda: terminal.approved_count() >= 50, 30, "50 approved sales")
        terminal.stop_selling()
        head = terminal.stopped_head
        assert terminal.approved[-1] == head          # every approval came before STOPPED
        seqs = [json.loads(text)["seq"] for text in export_lines(tmp_path / "T001.ledger.db")]
        assert seqs[-1] == head and set(terminal.approved) <= set(seqs)
        # the agent keeps running (uploading) but sells nothing more
        terminal.proc.send_signal(signal.SIGTERM)
        terminal.proc.wait(timeout=15)
        assert terminal.approved[-1] == head
        assert [json.loads(text)["seq"] for text in export_lines(tmp_path / "T001.ledger.db")][-1] == head
    finally:
        terminal.kill()


def test_stop_selling_waits_for_the_sale_in_progress(tmp_path):
    """The drill's old race: SIGUSR1 landed while a sale was being committed,
    the drill read the ledger, and the sale was reported approved afterwards.
    Here each stop is sent at a random point of a fast counter; at the moment
    stop_selling returns, the ledger already holds every sale that will ever be
    reported approved."""
    config = write_config(tmp_path)
    for round_ in range(5):
        terminal = TerminalProcess(config, tmp_path / "t.log", rate=500, seed=round_)
        terminal.start()
        try:
            wait_for(lambda: terminal.approved_count() >= 20 * (round_ + 1), 30, "sales")
            terminal.stop_selling()
            ledger = {json.loads(text)["seq"] for text in export_lines(tmp_path / "T001.ledger.db")}
            reported = set(terminal.approved)
        finally:
            terminal.kill()
        assert reported <= ledger, sorted(reported - ledger)


def test_the_synthetic_counter_is_not_part_of_the_shipped_terminal():
    code = "import importlib.util, sys; sys.exit(importlib.util.find_spec('firmware.loadgen') is not None)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env()).returncode == 0
