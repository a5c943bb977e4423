"""The gateway's MQTT side: subscribe to every terminal's uplink and status,
hand messages to ingest, publish the acks ingest produces. Whatever else
arrives (authorization requests, and statuses for config push) goes to the
handler the caller plugs in (`make_handler`: gateway/enforcement/handler.py
in `gateway run`), so ingest does not depend on the wings above it.

The session is persistent (clean_session=False, a fixed client id, QoS 1
subscriptions), so while the gateway is down or restarting the broker keeps
queueing the terminals' batches for it. Acks are retained per terminal, so a
terminal that reconnects learns its watermark at once instead of re-sending
what is already stored.

Several workers (`gateway run --share-group NAME`, each its own broker user
and so its own client id and session) subscribe as one shared-subscription
group: the broker hands each message to one of them. Two workers may then
publish acks for one terminal close together, and the retained one may be
the older, lower one; that is safe because an ack is cumulative and the
terminal never moves its watermark back (firmware/uplink.py): at worst it
re-sends a few stored records, which the database drops as duplicates and
answers with the current ack.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.ingest.pipeline import IngestProcess
from gateway.ingest.writer import QuarantineBudget
from gateway.store import KeyCache, Store
from protocols import envelope, topics, transport

log = logging.getLogger(__name__)


def check_share_group(name: str) -> str:
    """`name` if it can be a shared subscription's group (one topic level:
    no '/', '+', '#', not empty), else ValueError saying why."""
    if not name or any(c in name for c in "/+#") or not name.isprintable() or len(name) > 64:
        raise ValueError(f"--share-group {name!r}: 1-64 printable characters without '/', '+' or '#'")
    return name


class Handler(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def on_message(self, terminal: str, leaf: str, payload: bytes) -> None: ...


Publish = Callable[[str, bytes, int, bool], None]   # (topic, payload, qos, retain)


class GatewayService:
    def __init__(self, store: Store, broker: str, make_handler: Callable[[object, Publish], Handler],
                 username: str | None = None, password: str | None = None,
                 client_id: str = "gateway", share_group: str | None = None, verifiers: int = 2,
                 ca: str | None = None, cert: str | None = None,
                 key: str | None = None, budget: QuarantineBudget = QuarantineBudget()):
        """Ingest runs as a pipeline of child processes (gateway/ingest/pipeline.py)
        with `verifiers` verifier processes. `share_group`: subscribe as one
        member of that MQTT shared subscription group (`$share/GROUP/...`), so
        the broker hands each message to one of the group's workers; the
        database keeps order and exactly-once across them
        (gateway/ingest/writer.py). `ca`, `cert`, `key`: TLS files for an
        mqtts:// broker (protocols/transport.py). `budget`: what each terminal
        may put into the quarantine an hour (gateway/ingest/writer.py).
        `make_handler(ingest, publish)`: the handler of every other message."""
        self.store = store
        self.broker = broker
        self.connected = threading.Event()
        self.share_group = check_share_group(share_group) if share_group is not None else None
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                             protocol=mqtt.MQTTv311)
        if username:
            client.username_pw_set(username, password)
        self._host, self._port = transport.prepare(client, broker, ca, cert, key)
        client.reconnect_delay_set(0.2, 5)
        # No cap on our publishes in flight (acks, config, authorizations): with
        # a cap, paho scans every message in flight on each PUBACK to find one
        # to release, which under a flood of acks grew to a tenth of this
        # process's time. The broker takes them as they come.
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client
        self._key_for = KeyCache(store)  # acks are MACed with the terminal's key
        self.ingest = IngestProcess(store.path, self._publish_ack, key_for=self._key_for,
                                    verifiers=verifiers, budget=budget)
        self.enforcement = make_handler(self.ingest, self._publish)

    def start(self) -> None:
        self.ingest.start()
        self.enforcement.start()
        self.client.connect_async(self._host, self._port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.enforcement.stop()
        self.ingest.stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("broker refused the gateway: %s", reason_code)
            return
        transport.no_delay(client)
        client.subscribe([(f"$share/{self.share_group}/{name}" if self.share_group else name, 1)
                          for name in topics.GATEWAY_SUBSCRIBES])
        self.connected.set()
        log.info("gateway connected to %s (session present: %s)", self.broker, flags.session_present)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        """From here on the broker keeps every terminal's message for this
        session, even while the gateway is away: operators (and fault drills)
        wait for this line before the first terminals sell."""
        refused = [code for code in reason_codes if code.is_failure]
        if refused:
            log.error("broker refused gateway subscriptions: %s", refused)
        else:
            log.info("gateway subscribed to the terminals' topics")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        log.warning("gateway disconnected from broker: %s", reason_code)

    def _on_message(self, client, userdata, message):
        """Never raises: an exception here would end paho's network loop,
        and with it every terminal's ingest, for good."""
        try:
            parsed = topics.parse(message.topic)
            if parsed is None:
                return
            terminal, leaf = parsed
            if leaf == topics.UP:
                self.ingest.submit_batch(message.topic, terminal, message.payload)
            elif leaf == topics.STATUS:
                self.ingest.submit_status(terminal, message.payload)
                self.enforcement.on_message(terminal, leaf, message.payload)
            elif leaf == topics.AUTH_REQ:
                self.enforcement.on_message(terminal, leaf, message.payload)
        except Exception:
            log.exception("message not handled topic=%s (%d bytes)", message.topic, len(message.payload))

    def _publish_ack(self, terminal: str, upto: int, seen: int | None) -> None:
        key = self._key_for(terminal)
        if key is None:  # ingest acks only registered terminals; a terminal removed since gets none
            return
        self.client.publish(topics.topic(terminal, topics.ACK), envelope.encode_ack(key, terminal, upto, seen),
                            qos=1, retain=True)

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain)
