"""The agent's configuration refuses what it does not read, by name: a
misspelt or foreign table (such as the simulator's old `[load]`) and an uplink
window the gateway would refuse records beyond."""

import subprocess
import sys
import tomllib

import pytest

from firmware.config import ConfigError, parse
from gateway.enforcement import fleet
from protocols import envelope
from simulator.processes import ROOT, _env, terminal_config_text


def creds() -> fleet.Credentials:
    return fleet.Credentials("T001", "ab" * 32, "pw")


def test_terminal_config_with_a_load_table_is_refused_by_name(tmp_path):
    text = terminal_config_text(creds(), "mqtt://127.0.0.1:1883", tmp_path / "l.db")
    data = tomllib.loads(text + "\n[load]\nrate = 5.0\n")
    with pytest.raises(ConfigError, match=r"unknown table \[load\]"):
        parse(data, tmp_path)
    config = tmp_path / "t.toml"
    config.write_text(text + "\n[load]\nrate = 5.0\n")
    run = subprocess.run([sys.executable, "-m", "firmware", "run", "--config", str(config)], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "unknown table [load]" in run.stderr
    assert not (tmp_path / "l.db").exists()  # refused before the ledger was opened


def test_a_misspelt_table_is_refused_not_ignored(tmp_path):
    text = terminal_config_text(creds(), "mqtt://127.0.0.1:1883", tmp_path / "l.db")
    with pytest.raises(ConfigError, match=r"unknown table \[conter\]"):
        parse(tomllib.loads(text + '\n[conter]\nclerk = "c1"\n'), tmp_path)


def test_an_uplink_window_beyond_the_gateways_is_refused(tmp_path):
    text = terminal_config_text(creds(), "mqtt://127.0.0.1:1883", tmp_path / "l.db")
    ok = parse(tomllib.loads(text.replace("[uplink]\n", f"[uplink]\nwindow = {envelope.SEQ_WINDOW}\n")), tmp_path)
    assert ok.uplink.window == envelope.SEQ_WINDOW
    with pytest.raises(ConfigError, match="uplink.window"):
        parse(tomllib.loads(text.replace("[uplink]\n", f"[uplink]\nwindow = {envelope.SEQ_WINDOW + 1}\n")), tmp_path)
