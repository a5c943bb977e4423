"""`gateway run --upstream` end to end: real terminal agents sell through a real
Mosquitto into the real gateway process, whose supervision child feeds a local
HTTP platform that answers 503 for a while and then accepts. Every record the
terminals wrote arrives upstream exactly once, in order per terminal, under a
valid signature, as the terminal signed it."""

import json
import sqlite3

import pytest

from firmware.ledger import export_lines
from simulator.processes import wait_for
from tests.support.district import District
from tests.support.upstream_platform import Receiver

pytestmark = pytest.mark.slow

KEY = "province-shared-key-7"
SALES_PER_TERMINAL = 120


@pytest.fixture
def platform():
    receiver = Receiver(KEY.encode(), failing=True)
    yield receiver
    receiver.close()


@pytest.fixture
def district(tmp_path, monkeypatch, platform):
    monkeypatch.setenv("GATEWAY_UPSTREAM_KEY", KEY)  # the gateway process inherits it
    d = District(tmp_path / "d", terminals=2, rate=20, count=SALES_PER_TERMINAL)
    d.gateway.extra_args += ["--upstream", platform.url]
    yield d.start()
    d.close()


def outbox_state(db) -> tuple[int, str | None]:
    conn = sqlite3.connect(db)
    try:
        pending = conn.execute("SELECT count(*) FROM outbox WHERE sent IS NULL").fetchone()[0]
        error = conn.execute("SELECT last_error FROM upstream_state").fetchone()[0]
        return pending, error
    finally:
        conn.close()


def test_gateway_run_upstream_delivers_every_record_once_in_order_through_an_outage(district, platform):
    d = district
    # the outage overlaps selling: records pile up in the outbox while the platform says 503
    wait_for(lambda: platform.rejected >= 3 and d.approved() >= 40, 90, "three refused batches while selling")
    platform.failing = False
    d.wait_selling(2 * SALES_PER_TERMINAL, timeout=120)
    d.stop_selling()
    d.wait_synced()
    d.assert_consistent()
    total = d.stored()
    wait_for(lambda: len(platform.records()) >= total, 90, f"{total} records upstream", interval=0.2)
    wait_for(lambda: outbox_state(d.db)[0] == 0, 30, "the outbox marked sent")

    assert platform.bad_signatures == 0 and platform.bad_batches == 0
    ids = [i["id"] for i in platform.items]
    assert ids == sorted(set(ids))
    assert platform.raw_ids == ids  # nothing accepted was ever sent a second time
    records = platform.records()
    keys = [(r["terminal"], r["seq"]) for r in records]
    assert len(keys) == len(set(keys)) == total
    for name, ledger in d.ledgers.items():
        written = [json.loads(line) for line in export_lines(ledger)]
        mine = [r for r in records if r["terminal"] == name]
        assert [r["seq"] for r in mine] == [w["seq"] for w in written], f"{name}: missing or out of order"
        assert [r["record"] for r in mine] == written  # as the terminal signed it
    assert outbox_state(d.db) == (0, "HTTP 503")  # the outage is still on record after recovery
