"""No terminal can stall the district's ingest (issue 15, the trust boundary):
whatever a message holds, it is stored, quarantined with a reason or refused,
no process dies of it, and what one terminal sends costs that terminal alone.

Checked through the process pipeline `gateway run` runs, and (what the
writer makes of it) through the writer driven directly
(tests/support/inline_ingest.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.enforcement.fleet import provision
from gateway.ingest.writer import QUARANTINE_BYTES_PER_HOUR, SEQ_WINDOW, QuarantineBudget
from gateway.ingest.pipeline import IngestProcess
from gateway.store import KeyCache, Store
from protocols import envelope, topics
from simulator.broker import Mosquitto
from simulator.processes import GatewayProcess, provision_terminals, wait_for
from tests.records_factory import KEY, batch, chain
from tests.support.inline_ingest import InlineIngest
from tests.support.verifier_failpoints import HOLD, held_path

TOPIC = "agri/v1/t/{}/up"
NESTED = 100_000  # the poison: about 200 KB of nested `[`


def nested_batch(terminal: str) -> bytes:
    return (b'{"v":1,"terminal":"%s","after":0,"records":' % terminal.encode()
            + b"[" * NESTED + b"]" * NESTED + b"}")


class Pipeline:
    """One ingest topology, driven as the network thread drives it."""

    def __init__(self, tmp_path, kind: str, verifiers: int = 2, module: str = "gateway.ingest.verifier", **options):
        self.store = Store(tmp_path / "gw.db")
        for name in ("T1", "T2"):
            provision(self.store, name, "shop", 0, key_hex=KEY.hex())
        self.acks: dict[str, int] = {}
        self.kind = kind
        publish = self._ack
        if kind == "process":
            self.ingest = IngestProcess(self.store.path, publish, KeyCache(self.store), verifiers=verifiers,
                                        verifier_module=module, **options)
        else:
            self.ingest = InlineIngest(self.store, publish, **options)
        self.ingest.start()

    def _ack(self, terminal, upto, seen):
        self.acks[terminal] = max(self.acks.get(terminal, 0), upto)

    def send(self, terminal: str, payload: bytes) -> None:
        self.ingest.submit_batch(TOPIC.format(terminal), terminal, payload)

    def wait_acked(self, terminal: str, upto: int, timeout: float = 20) -> None:
        wait_for(lambda: self.acks.get(terminal, 0) >= upto, timeout, f"{terminal} acked up to {upto}")

    def quarantined(self, reason: str) -> list[dict]:
        return [q for q in self.store.quarantined() if q["reason"] == reason]

    def pids(self) -> dict:
        return self.ingest.pids()

    def close(self) -> None:
        self.ingest.stop()
        self.store.close()


@pytest.fixture(params=["inline", "process"])
def pipeline(tmp_path, request):
    p = Pipeline(tmp_path, request.param)
    yield p
    p.close()


# ---------------------------------------------------------------- item 1: the poison message

def test_nested_brackets_are_quarantined_and_no_process_dies(pipeline):
    records = chain("T2", 9)
    pipeline.send("T2", batch("T2", 0, records[:3]))
    pipeline.wait_acked("T2", 3)
    before = pipeline.pids()
    for i in range(3):
        pipeline.send("T1", nested_batch("T1"))
        pipeline.send("T2", batch("T2", 3 + 2 * i, records[3 + 2 * i:5 + 2 * i]))
    pipeline.wait_acked("T2", 9)
    wait_for(lambda: len(pipeline.quarantined("malformed_json")) == 3, 20, "three quarantined poison messages")
    assert {q["terminal"] for q in pipeline.quarantined("malformed_json")} == {"T1"}
    assert pipeline.pids() == before
    assert pipeline.store.count_records() == 9


def test_a_lone_surrogate_in_a_record_is_quarantined_and_no_process_dies(pipeline):
    """`"\\ud800"` is valid JSON but has no UTF-8 form: it used to raise out of
    the record check (and, as a rejected record's text, out of the verifier's
    answer to the writer)."""
    records = chain("T1", 3)
    texts = [envelope.stored_text(r) for r in records]
    texts[1] = texts[1].replace('"packs":3,', '"packs":3,"spec":"\\ud800",')
    before = pipeline.pids()
    pipeline.send("T1", envelope.encode_batch("T1", 0, texts))
    pipeline.send("T2", batch("T2", 0, chain("T2", 2)))
    pipeline.wait_acked("T2", 2)
    pipeline.wait_acked("T1", 3)  # the bad record is accounted for as an altered one
    assert [(q["seq"], q["reason"]) for q in pipeline.store.quarantined()] == [(2, "not_utf8")]
    assert pipeline.pids() == before


def test_message_held_by_a_killed_verifier_is_quarantined_after_restart_and_others_are_acked(tmp_path):
    """The verifier is killed while it holds one message (a failpoint holds
    it there), twice: the first time the message is sent again alone, the
    second time it is quarantined as `verifier_crashed`, unread. Another
    terminal's records that queued behind it on the same verifier are acked,
    and so is everything after; the writer lives on."""
    p = Pipeline(tmp_path, "process", verifiers=1, module="tests.support.verifier_failpoints")
    try:
        records = chain("T2", 15)
        p.send("T2", batch("T2", 0, records[:5]))
        p.wait_acked("T2", 5)
        before = p.pids()
        held = b'{"v":1,"terminal":"T1","after":0,"records":[{"note":"' + HOLD + b'"}]}'
        marker = held_path(p.store.path)
        p.send("T1", held)
        p.send("T2", batch("T2", 5, records[5:10]))  # behind it, on the same verifier
        first = int(wait_for(lambda: marker.exists() and marker.read_text(), 20, "the verifier holding it"))
        os.kill(first, signal.SIGKILL)
        second = int(wait_for(lambda: marker.read_text() != str(first) and marker.read_text(), 20,
                              "a new verifier holding it, alone"))
        os.kill(second, signal.SIGKILL)
        p.wait_acked("T2", 10)
        (q,) = wait_for(lambda: p.quarantined("verifier_crashed"), 20, "the message quarantined")
        assert q["terminal"] == "T1" and q["topic"] == TOPIC.format("T1")
        assert p.store.conn.execute("SELECT payload FROM quarantine WHERE id=?", [q["id"]]).fetchone()[0] == held
        p.send("T2", batch("T2", 10, records[10:]))
        p.wait_acked("T2", 15)
        after = p.pids()
        assert first in before["verifiers"] and not set(after["verifiers"]) & {first, second}
        assert after["writer"] == before["writer"]  # only the verifier was replaced
        assert p.store.count_records() == 15
    finally:
        p.close()


# ---------------------------------------------------------------- item 1, through the broker

@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Mosquitto(tmp_path_factory.mktemp("broker")).start()
    yield b
    b.kill()


def _children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def test_poison_stream_through_the_broker_kills_no_gateway_process(tmp_path, broker):
    """`gateway run`, fed the nested-`[` message between
    another terminal's batches over a real Mosquitto: every batch of the other
    terminal is acked, the poison is quarantined each time, and the gateway
    and all its children are the processes it started with."""
    db = tmp_path / "gw.db"
    creds = {c.terminal: c for c in provision_terminals(db, ["P1", "H1"])}
    key = bytes.fromhex(creds["H1"].key_hex)
    gateway = GatewayProcess(db, broker.url, tmp_path / "gw.log", extra_args=["--no-supervision"]).start()
    acked = {"upto": 0}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"hostile-{os.getpid()}", clean_session=True)

    def on_message(c, u, message):
        acked["upto"] = max(acked["upto"], json.loads(message.payload)["upto"])

    client.on_message = on_message
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        client.subscribe(topics.topic("H1", topics.ACK), 1)
        records = chain("H1", 12, key=key)

        def first_acked() -> bool:  # sent until the gateway, starting, has subscribed and answers
            client.publish(topics.topic("H1", topics.UP), batch("H1", 0, records[:2]), qos=1)
            return acked["upto"] >= 2

        wait_for(first_acked, 30, "the first ack", interval=0.5)
        children = wait_for(lambda: _children(gateway.proc.pid), 10, "the gateway's children")
        for i in range(1, 6):
            client.publish(topics.topic("P1", topics.UP), nested_batch("P1"), qos=1)
            client.publish(topics.topic("H1", topics.UP), batch("H1", 2 * i, records[2 * i:2 * i + 2]), qos=1)
        wait_for(lambda: acked["upto"] >= 12, 30, "every batch of the other terminal acked")
        store = Store(db)
        try:
            wait_for(lambda: len([q for q in store.quarantined() if q["terminal"] == "P1"]) == 5, 20,
                     "five quarantined poison messages")
            assert {q["reason"] for q in store.quarantined()} == {"malformed_json"}
        finally:
            store.close()
        assert gateway.proc.poll() is None
        assert _children(gateway.proc.pid) == children
    finally:
        client.loop_stop()
        client.disconnect()
        gateway.stop()


# ---------------------------------------------------------------- item 4: the quarantine budget

@pytest.mark.parametrize("kind", ["inline", "process"])
def test_junk_flood_leaves_the_quarantine_bounded_with_one_alert_and_others_acked(tmp_path, kind):
    """The default budget (4 MiB an hour) against the issue's flood: one
    terminal's 250 KB junk messages, here forty of them (10 MB)."""
    p = Pipeline(tmp_path, kind)
    try:
        junk = b"\xffjunk" * (250 * 1024 // 5)  # 250 KB, not even UTF-8
        records = chain("T2", 40)
        for i in range(40):
            p.send("T1", junk)
            p.send("T2", batch("T2", i, records[i:i + 1]))
        p.wait_acked("T2", 40)
        rows = QUARANTINE_BYTES_PER_HOUR // len(junk)
        wait_for(lambda: sum(d["count"] for d in p.store.quarantine_dropped()) == 40 - rows, 20,
                 "every message over the budget counted")
        assert p.store.count_records() == 40
        assert p.store.conn.execute("SELECT count(*), sum(length(payload)) FROM quarantine").fetchone() == \
            (rows, rows * len(junk))
        assert rows * len(junk) <= QUARANTINE_BYTES_PER_HOUR
        alerts = [a for a in p.store.alerts() if a["kind"] == "quarantine_budget_exceeded"]
        assert [a["terminal"] for a in alerts] == ["T1"]
        assert [(d["terminal"], d["reason"], d["count"], d["bytes"]) for d in p.store.quarantine_dropped()] == \
            [("T1", "not_utf8", 40 - rows, (40 - rows) * len(junk))]
    finally:
        p.close()


def test_quarantine_budget_counts_rows_and_survives_a_restart(tmp_path):
    """The rows budget too, counted per reason, the accountable rejects (a
    record that fails its MAC) as well; and a restarted writer picks up the
    hour where it was (no second alert, nothing more stored)."""
    budget = QuarantineBudget(bytes=10**9, rows=5)
    p = Pipeline(tmp_path, "inline", budget=budget)
    try:
        for i in range(4):
            p.send("T1", b"{not json")
        for i in range(4):
            p.send("T1", batch("T1", 0, chain("T1", 1, key=b"k" * 32)))  # bad MAC: accountable
        assert p.ingest.drain(10)
    finally:
        p.ingest.stop()
    again = InlineIngest(p.store, lambda *a: None, budget=budget)
    again.start()
    again.submit_batch(TOPIC.format("T1"), "T1", b"{not json")
    assert again.drain(10)
    again.stop()
    assert len(p.store.quarantined()) == 5
    assert [a["kind"] for a in p.store.alerts()].count("quarantine_budget_exceeded") == 1
    assert {(d["reason"], d["count"]) for d in p.store.quarantine_dropped()} == {("malformed_json", 1),
                                                                                ("bad_mac", 3)}
    p.store.close()


# ---------------------------------------------------------------- item 5: a seq far beyond the head

def test_seq_far_beyond_the_window_is_quarantined_with_an_alert_and_the_fast_path_goes_on(tmp_path):
    p = Pipeline(tmp_path, "inline")
    try:
        records = chain("T1", 10)
        p.send("T1", batch("T1", 0, records[:5]))
        p.wait_acked("T1", 5)
        far = envelope.make_record(KEY, "T1", 2**53 - 1, "ab" * 32, 1, "sale", records[0]["body"])
        p.send("T1", batch("T1", 2**53 - 2, [far]))
        assert p.ingest.drain(10)
        assert [(q["seq"], q["reason"], q["accountable"]) for q in p.store.quarantined()] == \
            [(2**53 - 1, "seq_beyond_window", 0)]
        assert [(a["kind"], a["terminal"], a["seq"]) for a in p.store.alerts()] == \
            [("seq_beyond_window", "T1", 2**53 - 1)]
        edge = envelope.make_record(KEY, "T1", 5 + SEQ_WINDOW + 1, "cd" * 32, 1, "sale", records[0]["body"])
        p.send("T1", batch("T1", 5 + SEQ_WINDOW, [edge]))  # just past the window
        assert p.ingest.drain(10)
        assert len(p.quarantined("seq_beyond_window")) == 2

        taken = []
        next_in_line = p.ingest._next_in_line
        p.ingest._next_in_line = lambda *a: taken.append(next_in_line(*a)) or taken[-1]
        p.send("T1", batch("T1", 5, records[5:]))
        assert p.ingest.drain(10)
        assert taken == [True]  # the terminal's next batch went the next-in-line way
        assert p.acks["T1"] == 10 and p.store.count_records() == 10
    finally:
        p.close()

