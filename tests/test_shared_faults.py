"""Fault drills with two gateway workers on PostgreSQL sharing one Mosquitto
(issue 16, section 4): real processes, real SIGKILL, a real broker and a
real PostgreSQL restarted under the terminals' feet. Each ends with every
ledger equal to what the gateway stored, every approved sale there, and
both workers having stored part of it."""

from __future__ import annotations

import pytest

from gateway.store import MASTER_KEY_ENV
from simulator import postgres
from tests.support.shared_district import SharedDistrict

pytestmark = pytest.mark.slow


@pytest.fixture
def district(tmp_path, pg_cluster, monkeypatch):
    """Three terminals selling 20 sales/s between them, two workers; the
    master key in the environment the workers inherit."""
    monkeypatch.setenv(MASTER_KEY_ENV, "3c" * 32)
    made = []

    def make(**kwargs) -> SharedDistrict:
        url = postgres.create_database(pg_cluster.url(), f"drill{len(made)}")
        d = SharedDistrict(tmp_path / f"d{len(made)}", url, **kwargs)
        made.append(d)
        return d.start()

    yield make
    for d in made:
        d.close()


def finish(d: SharedDistrict, total: int) -> None:
    d.wait_selling(total, timeout=180)
    d.stop_selling()
    d.wait_synced()
    d.assert_consistent()
    assert d.alerts() == []
    stored = d.stop_workers()
    assert all(n > 0 for n in stored.values()), f"the broker did not share the load: {stored}"


def test_either_worker_killed_mid_stream_several_times_loses_nothing_and_stores_nothing_twice(district):
    d = district(terminals=3, rate=20, count=700)
    for i in range(4):
        d.wait_selling(d.approved() + 100)
        victim = d.workers[i % 2]
        victim.kill()  # SIGKILL: batches it had taken from the broker and not committed are never acked
        d.wait_selling(d.approved() + 40)  # the other worker alone meanwhile
        victim.start().wait_subscribed()
    finish(d, 2100)


def test_broker_restarted_under_two_workers_loses_nothing(district):
    d = district(terminals=3, rate=20, count=500)
    d.wait_selling(150)
    d.broker.kill()
    d.wait_selling(d.approved() + 100)  # the counters keep selling with the broker down
    d.broker.start()
    finish(d, 1500)


def test_postgresql_restarted_while_terminals_keep_selling_loses_nothing(district, pg_cluster):
    d = district(terminals=3, rate=20, count=500)
    d.wait_selling(150)
    pg_cluster.restart()           # a fast shutdown: every connection of both workers is cut
    d.wait_selling(d.approved() + 100)
    pg_cluster.restart(crash=True)  # and an immediate one: crash recovery on the next start
    finish(d, 1500)
