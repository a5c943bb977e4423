"""The uplink across a dead link that nobody reset (a shop's router losing
packets): a real Mosquitto, the real gateway process, the terminal's uplink
behind a `netem.Link` that black-holes traffic until the MQTT keepalive
notices. Copies re-sent into the dead link at every ack timeout used to wait
in paho's queue and all go out after the reconnect (60 batches for a window
of 10 here); the backlog must still arrive whole and in seq order."""

import sqlite3
import time

import pytest

from firmware.ledger import Ledger
from firmware.uplink import Uplink, UplinkSettings
from simulator.broker import Mosquitto
from simulator.netem import Link
from simulator.processes import GatewayProcess, provision_terminals, wait_for

pytestmark = pytest.mark.slow


def sale(n: int) -> dict:
    return {"subject": f"S{n:05d}", "items": [{"product": "PD20080001", "packs": 1}], "identity": "override",
            "mode": "offline", "clerk": "clerk1", "sale_id": f"T1-{n}"}


@pytest.fixture
def world(tmp_path):
    db = tmp_path / "gateway.db"
    creds = provision_terminals(db, ["T1"])[0]
    broker = Mosquitto(tmp_path / "broker").start()
    gateway = GatewayProcess(db, broker.url, tmp_path / "gateway.log", extra_args=["--no-supervision"]).start()
    link = Link("127.0.0.1", broker.port).start()
    ledger = Ledger(tmp_path / "T1.ledger.db", "T1", bytes.fromhex(creds.key_hex), reserve_bytes=0)
    settings = UplinkSettings(broker=link.url, batch=10, window=100, ack_timeout=0.3, keepalive=3)
    uplink = Uplink(ledger, settings, bytes.fromhex(creds.key_hex))
    try:
        yield db, ledger, uplink, link
    finally:
        uplink.stop()
        ledger.close()
        link.close()
        gateway.kill()
        broker.kill()


def stored_order(db) -> list[int]:
    conn = sqlite3.connect(db)
    try:
        return [seq for (seq,) in conn.execute("SELECT seq FROM records WHERE terminal = 'T1' ORDER BY rid")]
    finally:
        conn.close()


def test_a_black_holed_link_gets_one_window_and_the_backlog_arrives_in_order(world):
    db, ledger, uplink, link = world
    uplink.start()
    n = 0
    for n in range(1, 31):
        ledger.append("sale", sale(n), int(time.time() * 1000))
        uplink.notify()
    wait_for(lambda: ledger.acked == 30, 30, "the first sales acknowledged")

    link.cut()
    before = uplink.sent_batches
    for n in range(31, 331):  # 300 sales while the link is dead: three windows' worth
        ledger.append("sale", sale(n), int(time.time() * 1000))
    uplink.notify()
    wait_for(lambda: not uplink.connected, 30, "the keepalive to notice the dead link")
    sent_while_dead = uplink.sent_batches - before
    # one window (100 records in batches of 10), not a copy of it per ack timeout
    assert sent_while_dead == 10, f"{sent_while_dead} batches sent into the dead link"
    time.sleep(3.0)  # the outage itself is the scenario: ten ack timeouts more
    assert uplink.sent_batches - before == 10

    link.restore()
    wait_for(lambda: ledger.acked == 330, 60, "the backlog acknowledged")
    order = stored_order(db)
    assert sorted(order) == list(range(1, 331))
    assert order == sorted(order), "the gateway stored the backlog out of seq order"
