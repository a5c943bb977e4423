"""What docs/protocol.md asks of a terminal where the spec used to be silent,
done by the project's Pi terminal (firmware/uplink.py), on a real Mosquitto
with a bare paho client in the gateway's place:

- no ack at all (a lost batch, or one the gateway refused whole:
  `unsupported_version`, `terminal_mismatch`): re-send from the watermark,
  backing off (ack_timeout, x2 each time, at most resend_max), never giving
  up, `stalled` after three; a genuine ack starts again at ack_timeout;
- the broker lost the retained ack: the terminal resumes from the watermark
  in its own ledger, not from zero and not from what it had sent."""

import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware.ledger import Ledger
from firmware.uplink import Uplink, UplinkSettings
from protocols import envelope, topics
from simulator.broker import Mosquitto
from simulator.processes import wait_for

KEY = bytes(range(32))


def sale(n: int) -> dict:
    return {"subject": f"S{n:05d}", "items": [{"product": "PD20080001", "packs": 1}], "identity": "card",
            "mode": "offline", "clerk": "clerk1", "sale_id": f"T1-{n}"}


class SilentGateway:
    """Subscribes to the terminal's uploads and acks only when told."""

    def __init__(self, broker: Mosquitto):
        self.batches: list[tuple[float, int, int]] = []   # (monotonic, after, first seq)
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="silent-gateway")
        self.subscribed = 0
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topics.topic("T1", topics.UP), 1)
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.lock:
            self.subscribed += 1

    def _on_message(self, client, userdata, message):
        terminal, after, records = envelope.decode_batch(message.payload)
        with self.lock:
            self.batches.append((time.monotonic(), after, records[0]["seq"]))

    def sends_from(self, after: int) -> list[float]:
        with self.lock:
            return [t for t, a, _ in self.batches if a == after]

    def ack(self, upto: int, retain: bool = True) -> None:
        self.client.publish(topics.topic("T1", topics.ACK), envelope.encode_ack(KEY, "T1", upto, upto), qos=1,
                            retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def world(tmp_path):
    broker = Mosquitto(tmp_path / "broker").start()
    gateway = SilentGateway(broker)
    ledger = Ledger(tmp_path / "T1.ledger.db", "T1", KEY, reserve_bytes=0)
    uplinks = []

    def uplink(**settings) -> Uplink:
        made = Uplink(ledger, UplinkSettings(broker=broker.url, **settings), KEY)
        uplinks.append(made)
        return made

    try:
        yield broker, gateway, ledger, uplink
    finally:
        for made in uplinks:
            made.stop()
        ledger.close()
        gateway.close()
        broker.kill()


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


@pytest.mark.slow
def test_unanswered_resends_back_off_and_an_ack_starts_again_at_ack_timeout(world):
    broker, gateway, ledger, make = world
    uplink = make(ack_timeout=1.0, resend_max=4.0)
    # every record in the ledger before the uplink starts: started first, its
    # sender may wake between two appends and send [1], then [2, 3] after 1
    # (seen on a loaded machine), and that early batch would count as a send
    # from the later watermark
    for n in range(1, 4):
        ledger.append("sale", sale(n), 1764300000000 + n)
    uplink.start()
    uplink.notify()
    wait_for(lambda: len(gateway.sends_from(0)) >= 5, 40, "the first send and four re-sends")
    waits = gaps(gateway.sends_from(0)[:5])
    # 1, 2, 4, 4 s (the sender wakes once a second, so each may be up to 1 s late)
    # (upper bounds with room for a busy machine; the lower ones are the back-off)
    assert waits[0] < 2.8, waits
    assert 1.8 < waits[1] < 4.0, waits
    assert 3.8 < waits[2] < 6.0 and 3.8 < waits[3] < 6.0, waits   # capped at resend_max
    assert uplink.stalled
    assert ledger.acked == 0 and ledger.head == 3   # nothing given up

    gateway.ack(1)
    wait_for(lambda: ledger.acked == 1, 10, "the genuine ack")
    assert not uplink.stalled
    acked_at = time.monotonic()
    wait_for(lambda: len(gateway.sends_from(1)) >= 2, 20, "two re-sends from the new watermark")
    first, second = gateway.sends_from(1)[:2]
    assert first - acked_at < 2.8 and 1.8 < second - first < 4.0   # back at ack_timeout, then doubling again


@pytest.mark.slow
def test_a_broker_that_lost_the_retained_ack_changes_nothing_the_terminal_resumes_from_its_ledger(world):
    broker, gateway, ledger, make = world
    uplink = make(ack_timeout=1.0)
    uplink.start()
    for n in range(1, 6):
        ledger.append("sale", sale(n), 1764300000000 + n)
    uplink.notify()
    wait_for(lambda: len(gateway.sends_from(0)) >= 1, 20, "the first batch")
    gateway.ack(3)
    wait_for(lambda: ledger.acked == 3, 10, "the ack")
    uplink.stop()
    gateway.client.publish(topics.topic("T1", topics.ACK), b"", qos=1, retain=True).wait_for_publish(5)
    with gateway.lock:
        subscribed, before = gateway.subscribed, len(gateway.batches)
    broker.restart()   # persistence on; the retained ack was cleared before: the broker "lost" it
    wait_for(lambda: gateway.subscribed > subscribed, 30, "the gateway's client subscribed again")
    again = make(ack_timeout=1.0)
    again.start()
    wait_for(lambda: len(gateway.batches) > before, 20, "a batch after the restart")
    with gateway.lock:
        _, after, first = gateway.batches[before]
    assert (after, first) == (3, 4)   # from the ledger's watermark: not 0, not past what was sent
    assert ledger.acked == 3
