"""A terminal that dies without a goodbye (SIGKILL: power cut, crashed agent)
goes offline at once through its MQTT last will, not half an hour later
through the silence rule: the broker publishes the retained "offline" status
the agent registered at connect as soon as the dead process's socket closes,
the gateway stores it, and the API's fleet endpoint shows it. A restart puts
the terminal back online over the retained will."""

import sqlite3
import time

import httpx
import pytest

from gateway.store import users
from gateway.store import Store
from simulator.broker import free_port, wait_port
from simulator.processes import wait_for
from tests.support.district import District

pytestmark = pytest.mark.slow

PASSWORD = "fleet-watch-pass-1"


@pytest.fixture
def district(tmp_path):
    d = District(tmp_path / "d", terminals=2, rate=2, count=0)
    store = Store(d.db)
    users.add_user(store.conn, "d1", "district", "330113", PASSWORD, int(time.time() * 1000))
    store.close()
    port = free_port()
    d.gateway.extra_args += ["--http", f"127.0.0.1:{port}", "--sweep-interval", "0.5"]
    d.start()
    try:
        wait_port("127.0.0.1", port, timeout=60)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            token = client.post("/api/login", json={"name": "d1", "password": PASSWORD}).json()["token"]
            client.headers["Authorization"] = f"Bearer {token}"
            yield d, client
    finally:
        d.close()


def fleet(client) -> dict[str, dict]:
    return {t["id"]: t for t in client.get("/api/terminals").json()["terminals"]}


def watcher_state(db, terminal: str) -> str | None:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT state FROM terminal_status WHERE terminal = ?", [terminal]).fetchone()
        return row[0] if row else None
    finally:
        conn.close()


def silent_violations(db) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM violations WHERE code = 'terminal_silent'").fetchone()[0]
    finally:
        conn.close()


def test_killed_terminal_goes_offline_by_its_last_will_and_back_online_on_restart(district):
    d, client = district
    wait_for(lambda: {t["state"] for t in fleet(client).values()} == {"online"}, 60, "both terminals online")
    d.wait_selling(4)
    victim = d.terminals["T001"]
    victim.kill()  # SIGKILL: no DISCONNECT, no "offline" from the agent itself

    # 20 s is well inside keepalive x 1.5 (45 s): the broker sent the will because the
    # socket closed with the process, not because the session timed out
    gone = wait_for(lambda: (f := fleet(client))["T001"]["state"] == "offline" and f, 20, "T001 offline by its will")
    wait_for(lambda: watcher_state(d.db, "T001") == "offline", 20, "the fleet watcher's status offline too")
    # the will path, not the silence path: seen just now, not flagged silent, no violation raised
    assert gone["T001"]["silent"] is False
    assert gone["T002"]["state"] == "online"
    assert silent_violations(d.db) == 0

    victim.start()
    wait_for(lambda: fleet(client)["T001"]["state"] == "online", 30, "T001 online again after restart")
    d.stop_selling()
    d.wait_synced()
    d.assert_consistent()
