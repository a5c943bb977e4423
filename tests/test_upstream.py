"""Upstream feed against a real local HTTP receiver that fails for a while:
everything arrives, once, in order, signed; the state shows the outage."""

import time

import pytest

from gateway.supervision import upstream

from gateway.store import upstream_outbox
from gateway.store import connect
from tests.support.upstream_platform import Receiver

KEY = b"province-shared-key"


def platform(fail: int = 0) -> Receiver:
    return Receiver(KEY, fail=fail)


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "gw.db"
    conn = connect(path)
    yield path, conn
    conn.close()


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def fill(conn, start, n):
    for i in range(start, start + n):
        upstream_outbox.enqueue(conn, 1000 + i, "record" if i % 7 else "case", {"n": i, "text": "销售记录"})


def test_outage_then_recovery_delivers_everything_once_in_order(db):
    path, conn = db
    receiver = platform(fail=4)
    fill(conn, 1, 250)
    sender = upstream.Sender(str(path), receiver.url, KEY, clock=lambda: int(time.time() * 1000), batch=40,
                             base_backoff_ms=20, max_backoff_ms=200, timeout=2)
    sender.start(idle=0.02)
    try:
        fill(conn, 251, 50)  # more arrive while it is failing
        assert wait_for(lambda: len(receiver.items) == 300)
        assert wait_for(lambda: conn.execute("SELECT count(*) FROM outbox WHERE sent IS NULL").fetchone()[0] == 0)
    finally:
        sender.stop()
        receiver.close()
    assert [i["payload"]["n"] for i in receiver.items] == list(range(1, 301))
    assert receiver.raw_ids == list(range(1, 301))  # no item was even sent twice after a 2xx
    assert receiver.requests >= 4 + 300 // 40 and receiver.bad_signatures == 0
    state = conn.execute("SELECT failures, last_error, last_success, sent_upto FROM upstream_state").fetchone()
    assert state[0] == 0 and state[1] == "HTTP 503" and state[2] and state[3] == 300


def test_platform_down_keeps_everything_and_backs_off(db, tmp_path):
    path, conn = db
    fill(conn, 1, 10)
    now = {"ms": 0}
    sender = upstream.Sender(str(path), "http://127.0.0.1:9/feed", KEY, clock=lambda: now["ms"], batch=5,
                             base_backoff_ms=1000, max_backoff_ms=8000, timeout=1)
    try:
        assert sender.send_once() == 0
        assert sender.send_once() == 0  # not due yet: no request at all
        waits = []
        for _ in range(5):
            state = conn.execute("SELECT failures, next_attempt FROM upstream_state").fetchone()
            waits.append(state[1] - now["ms"])
            now["ms"] = state[1]
            sender.send_once()
        assert waits == [1000, 2000, 4000, 8000, 8000]
        assert conn.execute("SELECT count(*) FROM outbox WHERE sent IS NULL").fetchone()[0] == 10
        receiver = platform()
        sender.endpoint = receiver.url
        now["ms"] += 10_000
        assert sender.send_once() == 5 and sender.send_once() == 5
        receiver.close()
        assert [i["id"] for i in receiver.items] == list(range(1, 11))
    finally:
        sender.stop()


def test_backoff_is_capped_exponential():
    assert [upstream.backoff_ms(n, 500, 4000) for n in range(1, 7)] == [500, 1000, 2000, 4000, 4000, 4000]
