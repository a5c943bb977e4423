"""Work that must run once in the fleet has one holder, and a standby takes it
over within 10 s when the holder is killed, on both backends."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.store.leader import Leadership, holder, lock_key

ROOT = Path(__file__).resolve().parents[1]

HOLDER = """
import sys, time
from gateway.store.leader import Leadership
role = Leadership(sys.argv[1], "supervision")
while not role.try_acquire():
    time.sleep(0.2)
print("LEADER", time.time(), flush=True)
while role.held():
    time.sleep(0.2)
print("LOST", flush=True)
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "gateway.db")
    return request.getfixturevalue("pg_url")


def start_worker(url: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, url], cwd=ROOT, stdout=subprocess.PIPE, text=True)


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    """The worker's next line, or '' if it says nothing within `timeout`."""
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return ""
    return proc.stdout.readline().strip()


def test_one_holder_and_a_takeover_within_10s_after_kill_9(url):
    first = start_worker(url)
    second = None
    try:
        assert read_line(first, 30).startswith("LEADER")
        second = start_worker(url)
        assert read_line(second, 3) == "", "two holders of one role"
        first.kill()
        killed = time.time()
        line = read_line(second, 15)
        assert line.startswith("LEADER"), line
        assert float(line.split()[1]) - killed < 10
    finally:
        for proc in (first, second):
            if proc:
                proc.kill()
                proc.wait()


def test_release_hands_over_and_a_role_is_per_name(url):
    a, b = Leadership(url, "upstream"), Leadership(url, "upstream")
    other = Leadership(url, "config-push")
    try:
        assert a.try_acquire() and a.held()
        assert not b.try_acquire()
        assert other.try_acquire(), "roles are independent"
        a.release()
        assert not a.held()
        assert b.try_acquire()
    finally:
        for role in (a, b, other):
            role.release()


def test_a_holder_whose_server_restarted_knows_it_lost_the_role(pg_cluster):
    url = pg_cluster.url()
    role = Leadership(url, "quota-follower")
    try:
        assert role.try_acquire()
        pg_cluster.restart(crash=True)
        assert not role.held()
        assert role.try_acquire(), "the role is free again after the restart"
    finally:
        role.release()


def test_lock_keys_are_stable_and_distinct():
    assert lock_key("supervision") == lock_key("supervision")
    assert lock_key("supervision") != lock_key("upstream")
    assert -(2 ** 63) <= lock_key("supervision") < 2 ** 63


def test_holder_names_the_live_holder_and_nobody_once_it_is_gone(url):
    """Operators see who leads from the lock itself: a holder that died (or
    released) is never shown."""
    assert holder(url, "supervision") is None
    proc = start_worker(url)
    try:
        assert read_line(proc, 30).startswith("LEADER")
        assert holder(url, "supervision") == f"{socket.gethostname()}:{proc.pid}"
        assert holder(url, "upstream") is None
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while holder(url, "supervision") is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert holder(url, "supervision") is None
    mine = Leadership(url, "supervision")
    try:
        assert mine.try_acquire()
        assert holder(url, "supervision") == mine.name == f"{socket.gethostname()}:{os.getpid()}"
    finally:
        mine.release()


def test_a_standby_asks_again_on_one_session_and_a_broken_one_is_replaced(pg_cluster):
    """A standby polls every second: a fresh connection each time would
    start a server backend a second per standby and role."""
    import psycopg

    url = pg_cluster.url()
    holder_role, standby = Leadership(url, "config-push"), Leadership(url, "config-push")

    def standby_backends() -> list[int]:
        with psycopg.connect(url, autocommit=True) as conn:
            return [r[0] for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'gateway leader config-push%%' "
                "AND pid NOT IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory')")]
    try:
        assert holder_role.try_acquire()
        assert not standby.try_acquire()
        first = standby_backends()
        assert len(first) == 1
        for _ in range(3):
            assert not standby.try_acquire()
        assert standby_backends() == first
        pg_cluster.restart(crash=True)
        assert not holder_role.held()
        assert standby.try_acquire(), "the standby's dead session is replaced, and the role is free"
        assert holder(url, "config-push") == standby.name
    finally:
        holder_role.release()
        standby.release()
