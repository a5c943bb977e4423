"""Followers process each stored record exactly once, after ingest's commit,
in storage order, and resume from their cursor after a restart."""

import sqlite3

import pytest

from gateway.enforcement.fleet import provision
from gateway.ingest.follow import Follower
from tests.support.inline_ingest import InlineIngest as Ingest
from gateway.store import Store
from tests.records_factory import KEY, batch, chain


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "gw.db")
    provision(s, "T1", "shop", 0, key_hex=KEY.hex())
    provision(s, "T2", "shop", 0, key_hex=KEY.hex())
    yield s
    s.close()


def recorder(seen):
    def hook(conn, terminal, entry, now):
        seen.append((terminal, entry.seq))
        conn.execute("CREATE TABLE IF NOT EXISTS followed(terminal, seq, PRIMARY KEY(terminal, seq))")
        conn.execute("INSERT INTO followed VALUES (?, ?)", [terminal, entry.seq])  # fails if run twice
    return hook


def test_follower_sees_every_record_once_in_storage_order(store):
    seen = []
    ingest = Ingest(store, lambda *a: None)
    ingest.follow("test", recorder(seen))
    ingest.start()
    r1, r2 = chain("T1", 30), chain("T2", 10)
    for payload, t in ((batch("T1", 0, r1[:10]), "T1"), (batch("T2", 0, r2), "T2"),
                       (batch("T1", 10, r1[10:]), "T1"), (batch("T1", 0, r1[:10]), "T1")):  # last: a redelivery
        ingest.submit_batch(f"agri/v1/t/{t}/up", t, payload)
    assert ingest.drain(20)
    ingest.stop()
    assert seen == [("T1", s) for s in range(1, 11)] + [("T2", s) for s in range(1, 11)] + \
        [("T1", s) for s in range(11, 31)]


def test_follower_resumes_from_its_cursor_after_a_restart(store, tmp_path):
    ingest = Ingest(store, lambda *a: None)
    ingest.start()
    records = chain("T1", 50)
    ingest.submit_batch("agri/v1/t/T1/up", "T1", batch("T1", 0, records))
    assert ingest.drain(20)
    ingest.stop()
    first = []
    f = Follower(store.path, "late", recorder(first), batch=20)
    assert f.step() == 20  # processes one batch, then "crashes"
    f.conn.close()
    again = []
    f2 = Follower(store.path, "late", recorder(again), batch=20)
    while f2.step():
        pass
    assert [s for _, s in first] == list(range(1, 21))
    assert [s for _, s in again] == list(range(21, 51))
    assert f2.lag() == 0


def test_a_failing_hook_moves_no_cursor_and_writes_nothing(store):
    ingest = Ingest(store, lambda *a: None)
    ingest.start()
    ingest.submit_batch("agri/v1/t/T1/up", "T1", batch("T1", 0, chain("T1", 5)))
    assert ingest.drain(20)
    ingest.stop()
    calls = []

    def flaky(conn, terminal, entry, now):
        calls.append(entry.seq)
        conn.execute("CREATE TABLE IF NOT EXISTS followed(seq)")
        conn.execute("INSERT INTO followed VALUES (?)", [entry.seq])
        if entry.seq == 3:
            raise RuntimeError("rule bug")

    f = Follower(store.path, "flaky", flaky)
    with pytest.raises(RuntimeError):
        f.step()
    assert f.cursor == 0
    conn = sqlite3.connect(store.path)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name='followed'").fetchone()[0] == 0
    assert conn.execute("SELECT rid FROM followers WHERE name='flaky'").fetchone()[0] == 0
