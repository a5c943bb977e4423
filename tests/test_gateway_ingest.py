"""Gateway ingest without a broker: each record once, gaps and chain breaks
alerted, nothing that fails verification dropped."""

import pytest

from gateway.enforcement.fleet import provision
from gateway.ingest.writer import Progress
from tests.support.inline_ingest import InlineIngest as Ingest
from gateway.store import Store
from protocols import envelope
from tests.records_factory import KEY, batch, chain

TOPIC = "agri/v1/t/{}/up"


@pytest.fixture
def gateway(tmp_path):
    store = Store(tmp_path / "gw.db")
    for name in ("T1", "T2"):
        provision(store, name, "shop", 0, key_hex=KEY.hex())
    acks = []
    ingest = Ingest(store, lambda t, upto, seen: acks.append((t, upto, seen)), wall_ms=lambda: 1)
    ingest.start()
    yield store, ingest, acks
    ingest.stop()
    store.close()


def send(ingest, terminal, payload, topic_terminal=None):
    t = topic_terminal or terminal
    ingest.submit_batch(TOPIC.format(t), t, payload)
    assert ingest.drain(10)


def test_batch_is_stored_and_acked_after_commit(gateway):
    store, ingest, acks = gateway
    records = chain("T1", 5)
    send(ingest, "T1", batch("T1", 0, records))
    assert list(store.export("T1")) == [envelope.stored_text(r) for r in records]
    assert acks[-1] == ("T1", 5, 5)
    assert store.terminals()[0]["acked_upto"] == 5


def test_redelivered_batch_is_stored_once(gateway):
    store, ingest, acks = gateway
    records = chain("T1", 5)
    for _ in range(3):
        send(ingest, "T1", batch("T1", 0, records))
    assert store.count_records() == 5
    assert ingest.stats.duplicates == 10
    assert acks[-1] == ("T1", 5, 5)
    assert store.alerts() == []


def test_out_of_order_batches_ack_only_the_contiguous_prefix(gateway):
    store, ingest, acks = gateway
    records = chain("T1", 20)
    send(ingest, "T1", batch("T1", 10, records[10:]))
    assert acks[-1] == ("T1", 0, 20)  # stored 11..20 but 1..10 missing: ack stays, `seen` tells
    send(ingest, "T1", batch("T1", 0, records[:10]))
    assert acks[-1] == ("T1", 20, 10)
    assert store.alerts() == []


def test_row_deleted_from_terminal_ledger_is_a_gap_alert_naming_terminal_and_seq(gateway):
    store, ingest, acks = gateway
    records = chain("T1", 6)
    del records[3]  # seq 4 deleted from the ledger
    send(ingest, "T1", batch("T1", 0, records))
    alerts = store.alerts()
    assert [(a["kind"], a["terminal"], a["seq"], a["seq_to"]) for a in alerts] == [("ledger_gap", "T1", 4, 4)]
    assert acks[-1] == ("T1", 6, 6)  # the gap is accounted for, so the terminal can move on


def test_gap_before_first_record_of_a_batch(gateway):
    store, ingest, acks = gateway
    records = chain("T1", 9)
    send(ingest, "T1", batch("T1", 0, records[:3]))
    send(ingest, "T1", batch("T1", 3, records[6:]))  # rows 4..6 gone
    assert [(a["kind"], a["seq"], a["seq_to"]) for a in store.alerts()] == [("ledger_gap", 4, 6)]
    assert acks[-1][1] == 9


def test_rewritten_record_breaks_the_chain(gateway):
    store, ingest, acks = gateway
    records = chain("T1", 3)
    # seq 3 re-signed with the key but chained to something else: a rewritten ledger
    forged = envelope.make_record(KEY, "T1", 3, "ab" * 32, 1, "sale", records[2]["body"])
    send(ingest, "T1", batch("T1", 0, records[:2] + [forged]))
    assert [(a["kind"], a["terminal"], a["seq"]) for a in store.alerts()] == [("chain_break", "T1", 3)]
    assert store.count_records() == 3


def test_chain_break_found_when_records_arrive_out_of_order(gateway):
    store, ingest, acks = gateway
    records = chain("T1", 4)
    other = chain("T1", 2, start_prev="cd" * 32)  # a different seq 1..2
    send(ingest, "T1", batch("T1", 2, records[2:]))
    send(ingest, "T1", batch("T1", 0, [records[0], other[1]]))
    kinds = {(a["kind"], a["seq"]) for a in store.alerts()}
    assert ("chain_break", 2) in kinds and ("chain_break", 3) in kinds


def test_altered_record_is_quarantined_with_alert_and_accounted(gateway):
    store, ingest, acks = gateway
    records = chain("T1", 3)
    records[1]["body"]["items"][0]["packs"] = 99  # altered in the ledger after signing
    send(ingest, "T1", batch("T1", 0, records))
    assert store.count_records() == 2
    q = store.quarantined()
    assert [(x["reason"], x["terminal"], x["seq"]) for x in q] == [("bad_mac", "T1", 2)]
    assert [(a["kind"], a["seq"]) for a in store.alerts()] == [("bad_mac", 2)]
    assert acks[-1] == ("T1", 3, 3)


def test_unknown_terminal_is_quarantined_and_not_acked(gateway):
    store, ingest, acks = gateway
    send(ingest, "T9", batch("T9", 0, chain("T9", 2)))
    assert store.count_records() == 0
    assert [x["reason"] for x in store.quarantined()] == ["unknown_terminal"]
    assert acks == []


def test_terminal_cannot_publish_records_of_another_terminal(gateway):
    store, ingest, acks = gateway
    send(ingest, "T1", batch("T1", 0, chain("T1", 2)), topic_terminal="T2")
    assert [x["reason"] for x in store.quarantined()] == ["terminal_mismatch"]
    assert store.count_records() == 0


def test_records_signed_with_another_key_are_rejected(gateway):
    store, ingest, acks = gateway
    send(ingest, "T1", batch("T1", 0, chain("T1", 2, key=b"x" * 32)))
    assert store.count_records() == 0
    assert {x["reason"] for x in store.quarantined()} == {"bad_mac"}


def test_different_record_for_a_stored_seq_is_a_conflict(gateway):
    store, ingest, acks = gateway
    send(ingest, "T1", batch("T1", 0, chain("T1", 2)))
    other = envelope.make_record(KEY, "T1", 1, envelope.GENESIS, 5, "heartbeat", {"uptime_s": 1, "backlog": 0})
    send(ingest, "T1", batch("T1", 0, [other]))
    assert store.count_records() == 2
    assert [(a["kind"], a["seq"]) for a in store.alerts()] == [("seq_conflict", 1)]


def test_malformed_message_is_quarantined_with_its_bytes(gateway):
    store, ingest, acks = gateway
    send(ingest, "T1", b'{"v":1,"terminal":"T1","after":0,"records":[{"seq":1}]')
    (q,) = store.quarantined()
    assert q["reason"] == "malformed_json"
    raw = store.conn.execute("SELECT payload FROM quarantine").fetchone()[0]
    assert raw.startswith(b'{"v":1')


def test_progress_survives_a_gateway_restart(tmp_path):
    store = Store(tmp_path / "gw.db")
    provision(store, "T1", "shop", 0, key_hex=KEY.hex())
    records = chain("T1", 10)
    acks = []
    ingest = Ingest(store, lambda *a: acks.append(a))
    ingest.start()
    ingest.submit_batch(TOPIC.format("T1"), "T1", batch("T1", 5, records[5:]))
    assert ingest.drain()
    ingest.stop()
    again = Ingest(store, lambda *a: acks.append(a))  # restarted: state from the database
    again.start()
    again.submit_batch(TOPIC.format("T1"), "T1", batch("T1", 0, records[:5]))
    assert again.drain()
    again.stop()
    assert acks[-1][:2] == ("T1", 10)
    assert store.alerts() == []
    store.close()


def test_progress_merges_ranges():
    p = Progress()
    p.account(3, 5)
    assert p.upto == 0
    p.account(1, 1)
    p.account(2, 2)
    assert p.upto == 5
    p.account(7, 9)
    p.account(6, 6)
    assert p.upto == 9 and p.above == {}


OLD_RECORDS_LAYOUT = """
CREATE TABLE records (
    terminal TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, time INTEGER NOT NULL,
    digest TEXT NOT NULL, prev TEXT NOT NULL, record TEXT NOT NULL, received INTEGER NOT NULL,
    rid INTEGER NOT NULL, PRIMARY KEY (terminal, seq)) WITHOUT ROWID;
CREATE UNIQUE INDEX records_rid ON records(rid);
"""


def test_database_of_the_old_records_layout_keeps_every_record_and_goes_on(tmp_path):
    """Before rid was the rowid, records was a WITHOUT ROWID table keyed by
    (terminal, seq). Opening such a database moves every row, in storage
    order, and ingest continues the chain."""
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(OLD_RECORDS_LAYOUT)
    records = chain("T1", 6)
    for rid, r in zip((3, 1, 2), records[:3]):  # storage order differs from seq order
        conn.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     ["T1", r["seq"], "sale", r["time"], envelope.digest(r), r["prev"], envelope.stored_text(r), 7, rid])
    conn.commit()
    conn.close()

    store = Store(path)
    provision(store, "T1", "shop", 0, key_hex=KEY.hex())
    layout = store.conn.execute("SELECT sql FROM sqlite_master WHERE name='records'").fetchone()[0]
    assert "WITHOUT ROWID" not in layout.upper()
    assert store.conn.execute("SELECT rid, seq FROM records ORDER BY rid").fetchall() == [(1, 2), (2, 3), (3, 1)]
    store.conn.execute("UPDATE terminals SET acked_upto = 3 WHERE id = 'T1'")
    acks = []
    ingest = Ingest(store, lambda t, upto, seen: acks.append((t, upto, seen)), wall_ms=lambda: 9)
    ingest.start()
    send(ingest, "T1", batch("T1", 0, records))  # the first three again, and three new
    ingest.stop()
    assert list(store.export("T1")) == [envelope.stored_text(r) for r in records]
    assert store.conn.execute("SELECT max(rid) FROM records").fetchone()[0] == 6
    assert ingest.stats.duplicates == 3 and store.alerts() == []
    assert acks[-1] == ("T1", 6, 6)
    store.close()
    Store(path).close()  # and opening it again changes nothing
