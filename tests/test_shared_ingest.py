"""Several ingest writers on one PostgreSQL database (issue 16, section 3):
each terminal's records are stored once and in order whichever writer a batch
reaches, a batch that overtakes its predecessor is stored once the
predecessor lands, followers reading by rid skip nothing when a lower rid
commits after a higher one was drawn, and a writer that loses its database
acknowledges nothing it has not committed."""

from __future__ import annotations

import random
import threading

import psycopg
import pytest

from gateway.enforcement.fleet import provision
from gateway.ingest.follow import Follower
from gateway.ingest.writer import QuarantineBudget
from gateway.store import MASTER_KEY_ENV, Store, transaction
from gateway.store.records import order_records
from protocols import envelope, topics
from simulator import postgres
from simulator.processes import wait_for
from tests.records_factory import KEY, batch, chain
from tests.support.inline_ingest import InlineIngest


@pytest.fixture(autouse=True)
def master_key(monkeypatch):
    """A database on a server has no file to put an automatic key beside."""
    monkeypatch.setenv(MASTER_KEY_ENV, "5a" * 32)


class Writer:
    """One gateway worker's writer, with its own store and connection."""

    def __init__(self, url: str, budget: QuarantineBudget = QuarantineBudget()):
        self.store = Store(url)
        self.acks: list[tuple[str, int, int | None]] = []
        self.ingest = InlineIngest(self.store, lambda t, upto, seen: self.acks.append((t, upto, seen)), budget=budget)

    def send(self, terminal: str, payload: bytes) -> None:
        self.ingest.submit_batch(topics.topic(terminal, topics.UP), terminal, payload)

    def last_ack(self, terminal: str) -> tuple[int, int | None]:
        return next((upto, seen) for t, upto, seen in reversed(self.acks) if t == terminal)

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def writers(pg_url):
    store = Store(pg_url)
    for name in ("T1", "T2", "T3", "T4"):
        provision(store, name, "shop", 0, key_hex=KEY.hex())
    store.close()
    made = [Writer(pg_url), Writer(pg_url)]
    yield made
    for w in made:
        w.close()


def stored(url: str, terminal: str) -> list[str]:
    store = Store(url)
    try:
        return list(store.export(terminal))
    finally:
        store.close()


def test_a_batch_that_overtakes_its_predecessor_at_the_other_writer_is_acked_once_that_lands(writers, pg_url):
    a, b = writers
    records = chain("T1", 15)
    a.send("T1", batch("T1", 0, records[:5]))
    assert a.last_ack("T1") == (5, 5)
    b.send("T1", batch("T1", 10, records[10:]))  # 6..10 are still on their way to the other writer
    assert b.last_ack("T1") == (5, 15)           # held, not a gap: the ack stays, `seen` tells
    a.send("T1", batch("T1", 5, records[5:10]))  # a's picture of T1 is stale: b moved it
    assert a.last_ack("T1")[0] == 15
    assert stored(pg_url, "T1") == [envelope.stored_text(r) for r in records]
    assert a.store.alerts() == [] and a.store.quarantined() == []
    assert a.store.terminals()[0]["acked_upto"] == 15


class MiniTerminal:
    """A terminal's uplink reduced to its rule: send from the watermark, in
    batches, at most `window` beyond it, rewind when no ack came; only an
    ack moves the watermark. A premature ack would leave a hole for good."""

    def __init__(self, name: str, count: int, window: int = 40, size: int = 5):
        self.name, self.records = name, chain(name, count, key=KEY)
        self.window, self.size = window, size
        self.watermark = 0
        self.cursor = 0
        self.lock = threading.Lock()

    def on_ack(self, terminal: str, upto: int, seen) -> None:
        if terminal == self.name:
            with self.lock:
                self.watermark = max(self.watermark, upto)

    def next_batch(self) -> bytes | None:
        with self.lock:
            if self.watermark == len(self.records):
                return None
            if self.cursor >= len(self.records) or self.cursor - self.watermark >= self.window:
                self.cursor = self.watermark  # no ack for the window: send again from the watermark
            start, self.cursor = self.cursor, min(self.cursor + self.size, len(self.records))
            return batch(self.name, start, self.records[start:self.cursor])


def feed(terminals: list[MiniTerminal], writer_pick, errors: list) -> None:
    """Until every terminal's watermark is at its head; each batch to the writer `writer_pick()` gives."""
    try:
        pending = list(terminals)
        while pending:
            for t in list(pending):
                payload = t.next_batch()
                if payload is None:
                    pending.remove(t)
                    continue
                writer_pick().send(t.name, payload)
    except Exception as err:  # surfaced by the test
        errors.append(err)


def test_two_writers_spend_one_quarantine_budget_per_terminal_with_one_alert(writers, pg_url):
    """A terminal's junk reaching both workers is charged to one hourly
    budget in the database: no more stored than one budget allows, the rest
    counted, one alert for the fleet, and the other terminals untouched."""
    budget = QuarantineBudget(bytes=10**9, rows=5)
    pair = [Writer(pg_url, budget), Writer(pg_url, budget)]
    try:
        records = chain("T2", 20)
        for i in range(20):
            pair[i % 2].send("T1", b"{not json %d" % i)
            pair[(i + 1) % 2].send("T2", batch("T2", i, records[i:i + 1]))
        store = pair[0].store
        assert len(store.quarantined()) == 5
        assert [(d["terminal"], d["reason"], d["count"]) for d in store.quarantine_dropped()] == \
            [("T1", "malformed_json", 15)]
        assert [a["terminal"] for a in store.alerts() if a["kind"] == "quarantine_budget_exceeded"] == ["T1"]
        assert stored(pg_url, "T2") == [envelope.stored_text(r) for r in records]
    finally:
        for w in pair:
            w.close()


def test_two_writers_taking_turns_at_random_store_every_terminal_once_in_order(writers, pg_url):
    """Two threads, each its own writer and connection, race on the same
    terminals (each batch to a writer at random): every ledger ends stored
    exactly, acked to its head, with no alert (no false gap, no chain break)."""
    terminals = [MiniTerminal(name, 120) for name in ("T1", "T2", "T3", "T4")]
    for w in writers:
        w.ingest.publish_ack = lambda t, upto, seen: [m.on_ack(t, upto, seen) for m in terminals]
    errors: list = []
    threads = [threading.Thread(target=feed, args=(terminals[i::2], lambda r=random.Random(i): r.choice(writers),
                                                   errors)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors and not any(th.is_alive() for th in threads)
    for t in terminals:
        assert stored(pg_url, t.name) == [envelope.stored_text(r) for r in t.records]
    check = Store(pg_url)
    try:
        assert {t["id"]: t["acked_upto"] for t in check.terminals()} == {t.name: 120 for t in terminals}
        assert check.alerts() == [] and check.quarantined() == []
    finally:
        check.close()


def _waiting_for_a_lock(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND datname = current_database()").fetchone()[0] > 0


def test_a_rid_drawn_first_commits_first_so_a_follower_skips_nothing(writers, pg_url):
    """A transaction draws a rid and stays open; another writer's batch must
    wait for it (the order lock) instead of committing a higher rid first,
    which a follower would read, move past, and so never see the lower one."""
    a, b = writers
    seen: list[tuple[str, int]] = []
    follower = Follower(pg_url, "order", lambda conn, terminal, entry, now: seen.append((terminal, entry.seq)))
    early = chain("T1", 1)[0]
    held = a.store.conn
    done = threading.Event()
    with transaction(held):
        order_records(held)
        held.execute("INSERT INTO records(terminal, seq, type, time, digest, prev, record, received) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", ["T1", 1, "sale", early["time"], envelope.digest(early),
                                                         early["prev"], envelope.stored_text(early), 1])
        other = threading.Thread(target=lambda: (b.send("T2", batch("T2", 0, chain("T2", 3))), done.set()))
        other.start()
        wait_for(lambda: _waiting_for_a_lock(pg_url), 20, "the other writer waiting for the order lock")
        assert not done.is_set()
        assert follower.step() == 0  # nothing committed yet
    other.join(timeout=20)
    assert done.is_set()
    while follower.step():
        pass
    assert seen == [("T1", 1), ("T2", 1), ("T2", 2), ("T2", 3)]
    follower.conn.close()


def test_followers_miss_no_record_while_two_writers_commit_side_by_side(writers, pg_url):
    """Many small transactions from two writers at once, a follower reading
    all the while: it sees every stored record exactly once."""
    seen: list[tuple[str, int]] = []
    follower = Follower(pg_url, "race", lambda conn, terminal, entry, now: seen.append((terminal, entry.seq)),
                        batch=7)
    stop = threading.Event()

    def follow():
        while not stop.is_set():
            follower.step()

    def write(writer, names):
        for name in names:
            records = chain(name, 60)
            for i in range(60):
                writer.send(name, batch(name, i, records[i:i + 1]))

    reader = threading.Thread(target=follow)
    reader.start()
    jobs = [threading.Thread(target=write, args=(writers[0], ["T1", "T2"])),
            threading.Thread(target=write, args=(writers[1], ["T3", "T4"]))]
    for j in jobs:
        j.start()
    for j in jobs:
        j.join(timeout=120)
    stop.set()
    reader.join(timeout=20)
    while follower.step():
        pass
    follower.conn.close()
    assert sorted(seen) == sorted((name, seq) for name in ("T1", "T2", "T3", "T4") for seq in range(1, 61))


def test_writer_reconnects_after_postgresql_restarts_under_load_and_acks_only_what_it_committed(pg_cluster):
    """The server is restarted while a terminal keeps sending: the writer's
    transactions fail meanwhile (nothing acked), it waits for the server and
    goes on, and the terminal, moved only by acks, ends with every record
    stored exactly once."""
    url = postgres.create_database(pg_cluster.url(), "restart")
    store = Store(url)
    provision(store, "T1", "shop", 0, key_hex=KEY.hex())
    terminal = MiniTerminal("T1", 400, size=4)
    ingest = InlineIngest(store, terminal.on_ack)
    failed = []
    process = ingest.process
    ingest.process = lambda group, idle: process(group, idle) or failed.append(len(group))
    errors: list = []
    sender = threading.Thread(target=feed, args=([terminal], lambda: _Sender(ingest), errors))
    sender.start()
    wait_for(lambda: terminal.watermark >= 100, 60, "a quarter acked")
    pg_cluster.restart()
    sender.join(timeout=120)
    assert not errors and not sender.is_alive()
    assert failed  # the restart did cut the writer off mid-stream
    assert list(store.export("T1")) == [envelope.stored_text(r) for r in terminal.records]
    assert store.terminals()[0]["acked_upto"] == 400
    assert store.alerts() == []
    store.close()


class _Sender:
    def __init__(self, ingest):
        self.ingest = ingest

    def send(self, terminal: str, payload: bytes) -> None:
        self.ingest.submit_batch(topics.topic(terminal, topics.UP), terminal, payload)


def test_a_database_whose_rids_the_old_writer_assigned_goes_on_after_migration_2(pg_url, monkeypatch):
    """Before migration 2 the single writer numbered the records itself and
    PostgreSQL's identity sequence never moved: the migration moves it past
    them, or the first insert after the upgrade would collide."""
    from gateway.store import connect, migrations

    with monkeypatch.context() as m:
        m.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
        m.setattr(migrations, "LATEST", 1)
        conn = connect(pg_url)
        old = chain("T1", 5)
        for r in old:
            conn.execute("INSERT INTO records(rid, terminal, seq, type, time, digest, prev, record, received) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [r["seq"], "T1", r["seq"], "sale", r["time"],
                                                                 envelope.digest(r), r["prev"],
                                                                 envelope.stored_text(r), 1])
        conn.close()
    w = Writer(pg_url)  # opening migrates
    try:
        provision(w.store, "T1", "shop", 0, key_hex=KEY.hex())
        w.store.conn.execute("UPDATE terminals SET acked_upto = 5 WHERE id = 'T1'")
        records = chain("T1", 8)
        w.send("T1", batch("T1", 5, records[5:]))
        assert w.last_ack("T1")[0] == 8
        assert w.store.conn.execute("SELECT seq, rid FROM records ORDER BY rid").fetchall() == \
            [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (7, 7), (8, 8)]
        assert w.store.alerts() == []
    finally:
        w.close()
