"""The commands that set up several ingest workers (issue 16, section 3):
`gateway terminal broker-auth --workers N` writes a broker user per worker
(and per worker's supervise child) with the gateway's permissions, and bad
values for it or for `gateway run --share-group` are refused before the
database is opened."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.enforcement import fleet

ROOT = Path(__file__).resolve().parents[1]
MASTER_KEY = "66" * 32


def gateway(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GATEWAY_MASTER_KEY": MASTER_KEY, "GATEWAY_MQTT_PASSWORD": "pw-1"}
    env.pop("GATEWAY_KEY_FILE", None)
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)


def users(passwd: Path) -> list[str]:
    return [line.split(":")[0] for line in passwd.read_text().splitlines()]


def acl_blocks(acl: Path) -> dict[str, list[str]]:
    blocks: dict[str, list[str]] = {}
    current = None
    for line in acl.read_text().splitlines():
        if line.startswith("user "):
            current = blocks.setdefault(line.split()[1], [])
        elif line.startswith("pattern") or not line.strip():
            current = None
        elif current is not None and line.startswith("topic "):
            current.append(line)
    return blocks


def test_broker_auth_writes_a_user_for_every_worker_and_its_supervise_child(tmp_path):
    db, out = tmp_path / "gw.db", tmp_path / "auth"
    assert gateway("terminal", "--db", str(db), "add", "T1").returncode == 0
    done = gateway("terminal", "--db", str(db), "broker-auth", "--out", str(out), "--workers", "3")
    assert done.returncode == 0, done.stderr
    assert users(out / "passwd") == ["gateway", "gateway-supervise", "gateway-w2", "gateway-w2-supervise",
                                     "gateway-w3", "gateway-w3-supervise", "T1"]
    blocks = acl_blocks(out / "acl")
    assert blocks["gateway-w2"] == blocks["gateway-w3"] == blocks["gateway"]
    assert "topic read agri/v1/t/+/up" in blocks["gateway-w3"]
    assert blocks["gateway-w3-supervise"] == blocks["gateway-supervise"] == ["topic read agri/v1/t/+/status"]


def test_broker_auth_without_workers_writes_the_single_gateway_users(tmp_path):
    db, out = tmp_path / "gw.db", tmp_path / "auth"
    assert gateway("terminal", "--db", str(db), "broker-auth", "--out", str(out)).returncode == 0
    assert users(out / "passwd") == list(fleet.GATEWAY_USERS)


@pytest.mark.parametrize("workers", ["0", "-1", str(fleet.MAX_WORKERS + 1)])
def test_broker_auth_refuses_a_worker_count_out_of_range_before_opening_the_database(tmp_path, workers):
    db, out = tmp_path / "gw.db", tmp_path / "auth"
    done = gateway("terminal", "--db", str(db), "broker-auth", "--out", str(out), "--workers", workers)
    assert done.returncode == 2 and "--workers must be" in done.stderr
    assert not db.exists() and not out.exists()


@pytest.mark.parametrize("group", ["a/b", "a+", "#", ""])
def test_run_refuses_a_share_group_that_is_not_one_topic_level_before_opening_the_database(tmp_path, group):
    db = tmp_path / "gw.db"
    done = gateway("run", "--db", str(db), "--share-group", group, "--no-supervision")
    assert done.returncode == 2 and "--share-group" in done.stderr
    assert not db.exists()


def test_run_refuses_fewer_than_one_verifier_before_opening_the_database(tmp_path):
    db = tmp_path / "gw.db"
    done = gateway("run", "--db", str(db), "--verifiers", "0", "--no-supervision")
    assert done.returncode == 2 and "--verifiers" in done.stderr
    assert not db.exists()
