"""A leader that lost its session may still be finishing a unit of work when
its successor starts: the two overlap for a moment. Nothing is applied twice
all the same, because each unit commits with its cursor and takes a lock
first: a follower's cursor row (FOR UPDATE) and the sweeps' advisory lock.
Each test holds the first "leader" inside its transaction, starts the second
one, and lets the first commit: the second must pick up after it, never
redo it."""

from __future__ import annotations

import threading
import time

import pytest

from gateway import store as gw_store
from gateway.enforcement import quota, registry
from gateway.enforcement.fleet import provision
from gateway.ingest.follow import Follower
from gateway.store import Store
from gateway.supervision.rules import config as rules_config
from gateway.supervision.service import Supervision
from protocols import authz, configsync
from tests.support import quota_fixtures as fx
from tests.support.inline_ingest import InlineIngest as Ingest
from tests.support.store_backends import backend_db  # noqa: F401 - a fixture
from tests.support.supervision import KEY, Chain

NOW = int(time.time() * 1000)
YEAR = authz.local_date(NOW)[:4]
BAGS = [2, 3, 1, 2, 2, 1, 3, 2]      # S1: 16 bags, 368 kg N over a 150 kg allowance


@pytest.fixture
def db(backend_db):
    s = Store(backend_db)
    try:
        provision(s, "T1", "shop-T1", 0, key_hex=KEY.hex())
        registry.set_section(s.conn, configsync.PARAMS, fx.params(), NOW)
        registry.import_subjects(s.conn, fx.subjects({"S1": 10}), NOW)
        chain = Chain("T1")
        records = [chain.add("sale", {
            "subject": "S1", "items": [{"product": fx.UREA[0], "spec": fx.UREA[1], "packs": bags}],
            "identity": "card", "mode": "offline", "clerk": "c1", "sale_id": f"s{i}",
            "consumption": {"fert_n": bags * fx.UREA_N_PER_BAG, "fert_total": bags * fx.UREA_N_PER_BAG}}, NOW)
            for i, bags in enumerate(BAGS)]
        ingest = Ingest(s, lambda *a: None)
        ingest.start()
        ingest.submit_batch("agri/v1/t/T1/up", "T1", chain.batch(records))
        assert ingest.drain(30)
        ingest.stop()
    finally:
        s.close()
    fx.add_shops(backend_db, {"shop-T1": (fx.TOWN, False)})
    return backend_db


class Held:
    """A hook that stops inside the transaction of its first record until
    told to go on: the old leader, caught mid-unit."""

    def __init__(self, inner):
        self.inner, self.inside, self.go = inner, threading.Event(), threading.Event()
        self.calls = 0

    def __call__(self, conn, terminal, entry, now):
        self.calls += 1
        self.inner(conn, terminal, entry, now)
        if self.calls == 1:
            self.inside.set()
            assert self.go.wait(30)


def query(url, sql, args=()):
    conn = gw_store.connect(url)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def test_two_quota_followers_overlapping_apply_each_record_once(db):
    held = Held(quota.RecordApplier(quota.ConfigCache()))
    old = Follower(db, "quota", held, batch=3)
    new = Follower(db, "quota", quota.RecordApplier(quota.ConfigCache()), batch=3)
    first = threading.Thread(target=old.step)
    first.start()
    assert held.inside.wait(30)
    done = []
    second = threading.Thread(target=lambda: done.append(new.step()))
    second.start()
    second.join(1.0)
    assert second.is_alive(), "the successor waits for the old leader's unit"
    held.go.set()
    first.join(30)
    second.join(30)
    assert held.calls == 3 and done == [3]
    while new.step():
        pass
    used = query(db, "SELECT used FROM quota_used WHERE subject = 'S1' AND category = 'fert_n' AND period = ?",
                 [YEAR])
    assert used == [(sum(BAGS) * fx.UREA_N_PER_BAG,)]
    assert query(db, "SELECT rid FROM followers WHERE name = 'quota'") == query(db, "SELECT max(rid) FROM records")
    assert query(db, "SELECT count(*) FROM violations WHERE code = 'over_quota'") == [(1,)]
    for f in (old, new):
        f.conn.close()


def test_two_sweeps_overlapping_file_each_violation_once(db):
    applier = Follower(db, "quota", quota.RecordApplier(quota.ConfigCache()))
    while applier.step():
        pass
    applier.conn.close()
    (violations,), = query(db, "SELECT count(*) FROM violations")
    assert violations >= 1
    cfg = rules_config.load(None)
    conns = [gw_store.connect(db), gw_store.connect(db)]
    old, new = (Supervision(conn, cfg, lambda: NOW) for conn in conns)
    try:
        from gateway.supervision import cases

        inside, go = threading.Event(), threading.Event()

        def old_unit():
            def work():
                n = cases.file_new_violations(old.conn, NOW, cfg)
                inside.set()
                assert go.wait(30)
                return n
            return old.sweeper._tx(work)

        filed = {}
        first = threading.Thread(target=lambda: filed.setdefault("old", old_unit()))
        first.start()
        assert inside.wait(30)
        second = threading.Thread(target=lambda: filed.setdefault("new", new.sweeper._tx(
            lambda: cases.file_new_violations(new.conn, NOW, cfg))))
        second.start()
        second.join(1.0)
        assert second.is_alive(), "the successor's sweep waits for the old one's"
        go.set()
        first.join(30)
        second.join(30)
        assert filed == {"old": violations, "new": 0}
        new.tick(NOW)
        (linked, counted), = query(db, "SELECT (SELECT count(*) FROM case_violations), "
                                       "(SELECT coalesce(sum(violations), 0) FROM cases)")
        assert linked == counted == violations
    finally:
        for conn in conns:
            conn.close()


def test_a_violation_whose_id_commits_late_is_still_filed(pg_url):
    """On PostgreSQL a violation's id is handed out at insert and the row
    appears at commit: id 1 can appear after id 2. The filing must not move
    its watermark past an id still on its way, or that violation never gets
    a case."""
    from gateway.store import transaction, violations
    from gateway.supervision import cases

    gw_store.connect(pg_url).close()
    cfg = rules_config.load(None)
    late, early, filer = (gw_store.connect(pg_url) for _ in range(3))
    try:
        inserted, go = threading.Event(), threading.Event()

        def late_writer():
            with transaction(late):
                violations.report(late, NOW, "test_late", "late", subject="S1")
                inserted.set()
                assert go.wait(30)

        writer = threading.Thread(target=late_writer)
        writer.start()
        assert inserted.wait(30)
        with transaction(early):
            violations.report(early, NOW, "test_early", "early", subject="S2")
        ids = dict(query(pg_url, "SELECT code, id FROM violations"))
        assert ids == {"test_early": ids["test_early"]}, "the late one is not visible yet"
        filed = []
        filing = threading.Thread(target=lambda: filed.append(_file(filer, cfg, cases)))
        filing.start()
        filing.join(1.0)
        assert filing.is_alive(), "the filing waits for the writer still open"
        go.set()
        writer.join(30)
        filing.join(30)
        assert filed == [2]
        assert query(pg_url, "SELECT count(*) FROM case_violations") == [(2,)]
    finally:
        go.set()
        for conn in (late, early, filer):
            conn.close()


def _file(conn, cfg, cases) -> int:
    from gateway.store import transaction

    with transaction(conn):
        return cases.file_new_violations(conn, NOW, cfg)


def test_an_upstream_item_whose_id_commits_late_is_sent_before_any_higher_one(pg_url):
    """The platform drops ids at or below the last it stored: an item whose
    id commits after a higher one has been sent would be lost there. The
    sender reads a batch only once every writer that queued an item is done."""
    from gateway.store import transaction, upstream_outbox
    from gateway.supervision.upstream import Sender
    from tests.support.upstream_platform import Receiver

    gw_store.connect(pg_url).close()
    platform = Receiver(b"k")
    late, early = gw_store.connect(pg_url), gw_store.connect(pg_url)
    sender = Sender(pg_url, platform.url, b"k", lambda: NOW)
    inserted, go = threading.Event(), threading.Event()
    try:
        def late_writer():   # a user closing a case in an API process, say
            with transaction(late):
                upstream_outbox.enqueue(late, NOW, "case", {"n": "late"})
                inserted.set()
                assert go.wait(30)

        writer = threading.Thread(target=late_writer)
        writer.start()
        assert inserted.wait(30)
        with transaction(early):   # the upstream follower, meanwhile
            upstream_outbox.enqueue(early, NOW, "record", {"n": "early"})
        sent = []
        sending = threading.Thread(target=lambda: sent.append(sender.send_once()))
        sending.start()
        sending.join(1.0)
        assert sending.is_alive(), "the sender waits for the writer still open"
        go.set()
        writer.join(30)
        sending.join(30)
        assert sent == [2]
        assert [item["payload"]["n"] for item in platform.items] == ["late", "early"]
        assert platform.raw_ids == sorted(platform.raw_ids)
    finally:
        go.set()
        sender.conn.close()
        for conn in (late, early):
            conn.close()
        platform.close()


def test_an_alert_whose_id_commits_late_is_still_converted(pg_url):
    """Two ingest workers raise alerts (a gap, a chain break) in their own
    transactions: an alert id can appear after a higher one. The integrity
    sweep converts alerts behind a watermark, so it waits for every writer
    still open instead of moving past the late id."""
    from gateway.store import records, transaction
    from gateway.supervision.rules import engine

    gw_store.connect(pg_url).close()
    late, early, sweeper_conn = (gw_store.connect(pg_url) for _ in range(3))
    insert = "INSERT INTO alerts(time, kind, terminal, seq, seq_to, detail) VALUES (?, ?, ?, ?, ?, '')"
    try:
        inserted, go = threading.Event(), threading.Event()

        def late_writer():      # what the writer's _alert does, held open
            with transaction(late):
                records.writing_alerts(late)
                late.execute(insert, [NOW, "ledger_gap", "TA", 5, 7])
                inserted.set()
                assert go.wait(30)

        writer = threading.Thread(target=late_writer)
        writer.start()
        assert inserted.wait(30)
        with transaction(early):
            records.writing_alerts(early)
            early.execute(insert, [NOW, "chain_break", "TB", 9, None])
        sweeper = engine.Sweeper(sweeper_conn, rules_config.load(None), lambda: NOW)
        swept = []
        sweeping = threading.Thread(target=lambda: swept.append(sweeper._tx(lambda: sweeper.sweep_alerts(NOW))))
        sweeping.start()
        sweeping.join(1.0)
        assert sweeping.is_alive(), "the sweep waits for the writer still open"
        go.set()
        writer.join(30)
        sweeping.join(30)
        assert swept == [2]
        assert sorted(code for (code,) in query(pg_url, "SELECT code FROM violations")) == ["chain_break", "ledger_gap"]
    finally:
        go.set()
        for conn in (late, early, sweeper_conn):
            conn.close()
