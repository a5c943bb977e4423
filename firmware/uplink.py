"""The uplink: ledger rows above the watermark, to the gateway, in order, QoS 1.

The watermark moves only on the gateway's end-to-end ack ("everything up to
seq N is committed"), never on a broker PUBACK: a PUBACK only says the broker
has the message, and a broker restart or a gateway crash can still lose it.
An ack counts only with a good MAC under this terminal's key (prefix "ack:",
docs/protocol.md): rows below the watermark are never sent again, so an ack
anyone else could write would be a way to make the terminal drop records.
Everything the uplink knows survives in the ledger (rows and watermark), so
after a restart it simply resumes from the watermark; paho keeps nothing on disk.

Flow control: at most `window` records are in flight beyond the watermark. If
no ack moves the watermark for `ack_timeout` seconds while records are in
flight, or an ack shows the gateway is missing records we sent (`seen` beyond
`upto`), the uplink rewinds to the watermark and sends again; the gateway
stores each (terminal, seq) once however often it arrives.

Re-sends without an ack back off: the n-th re-send in a row that brought no
progress waits ack_timeout x 2^n, at most `resend_max` (60 s), and any ack
that moves the watermark starts again at ack_timeout. A terminal cannot
tell a lost batch from one the gateway refused whole (`unsupported_version`,
`terminal_mismatch`: no ack, docs/protocol.md "When no ack comes"), and a
refused one will be refused again: every `ack_timeout` a window of up to
2000 records over a shop's line, into the terminal's own quarantine budget at
the gateway, is the cost of not backing off. It never gives up: the rows stay
in the ledger, and after three unanswered re-sends `stalled` is set and
logged, while the retained status (`head` far above `acked`) shows the
gateway's backlog rule the same thing.

It does not rewind on a silent gateway while the broker still holds back a
PUBACK for a batch: the link itself is then dead (a shop's uplink that drops
packets without a reset goes unnoticed until the keepalive), and every copy
sent into it would wait in paho's queue, to be sent again on reconnect beside
the rewind `on_connect` makes anyway: a copy of the window per `ack_timeout`
of the outage, over the shop's slow line, for the gateway to drop as
duplicates. Holding back keeps what paho re-sends to one window.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware.ledger import Ledger
from protocols import envelope, topics, transport
from protocols.clock import wall_ms as now_ms

log = logging.getLogger(__name__)


@dataclass
class UplinkSettings:
    broker: str = "mqtt://127.0.0.1:1883"   # mqtts://HOST:8883 for MQTT over TLS
    username: str | None = None
    password: str | None = None
    ca: str | None = None       # CA certificate the broker's is checked against (mqtts)
    cert: str | None = None     # client certificate, CN = terminal id (the broker's certificate listener)
    key: str | None = None      # its private key
    batch: int = 100            # records per message
    window: int = envelope.SEQ_WINDOW   # records in flight beyond the watermark (at most that)
    ack_timeout: float = 5.0    # seconds without progress before re-sending
    keepalive: int = 30
    heartbeat: float = 60.0     # seconds between "online" status re-announcements
    min_backoff: float = 0.5
    max_backoff: float = 30.0
    resend_max: float = 60.0    # longest wait between re-sends that bring no ack (doubling from ack_timeout)


STALLED_AFTER = 3   # unanswered re-sends in a row before the uplink calls itself stalled


class Uplink:
    def __init__(self, ledger: Ledger, settings: UplinkSettings, key: bytes,
                 versions: dict | Callable[[], dict] | None = None,
                 monotonic=time.monotonic, wall_ms=now_ms,
                 on_acked: Callable[[int, int], None] | None = None, network=None):
        """`key`: the terminal's record key, which also MACs the gateway's acks.
        `network`, if given, runs the MQTT client's socket instead of paho's
        own thread: anything with `add(client)` (after connect_async) and
        `remove(client)`."""
        self.ledger = ledger
        self._key = key
        self.refused_acks = 0
        self._network = network
        self.settings = settings
        self.terminal = ledger.terminal
        self.versions = versions or {}
        self._monotonic = monotonic
        self._wall_ms = wall_ms
        self._on_acked = on_acked  # (old watermark, new watermark), e.g. for "last sync" and latency
        self._wake = threading.Condition()
        self._connected = False
        self._stopping = False
        self._cursor = ledger.acked
        self._last_progress = monotonic()
        self._last_status = monotonic()
        self._rewind_to: int | None = None
        self._last_hole: int | None = None
        self.last_ack_wall_ms: int | None = None
        self.sent_batches = 0
        self.resends = 0
        self._unanswered = 0   # re-sends in a row that no ack progress followed
        self._unconfirmed: list[mqtt.MQTTMessageInfo] = []  # record batches the broker has not PUBACKed
        self._sender: threading.Thread | None = None
        # Other per-terminal topics this terminal reads (config, auth/resp):
        # leaf -> handler(payload), called on the network thread.
        self._handlers: dict[str, Callable[[bytes], None]] = {}

        self._up = topics.topic(self.terminal, topics.UP)
        self._ack = topics.topic(self.terminal, topics.ACK)
        self._status = topics.topic(self.terminal, topics.STATUS)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"terminal-{self.terminal}",
                             clean_session=True, protocol=mqtt.MQTTv311)
        if settings.username:
            client.username_pw_set(settings.username, settings.password)
        self._host, self._port = transport.prepare(client, settings.broker, settings.ca, settings.cert, settings.key)
        client.will_set(self._status, envelope.encode_status(self.terminal, "offline"), qos=1, retain=True)
        client.reconnect_delay_set(settings.min_backoff, settings.max_backoff)
        client.max_inflight_messages_set(64)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    # -- lifecycle

    def start(self) -> None:
        self.client.connect_async(self._host, self._port, keepalive=self.settings.keepalive)
        if self._network is not None:
            self._network.add(self.client)
        else:
            self.client.loop_start()
        self._sender = threading.Thread(target=self._send_loop, name=f"uplink-{self.terminal}", daemon=True)
        self._sender.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._sender:
            self._sender.join(timeout=5)
        try:
            if self._connected:
                info = self.client.publish(self._status, envelope.encode_status(
                    self.terminal, "offline", time_ms=self._wall_ms()), qos=1, retain=True)
                info.wait_for_publish(timeout=2)
            self.client.disconnect()
            if self._network is not None:   # paho closes the socket once DISCONNECT is written
                deadline = self._monotonic() + 2
                while self.client.socket() is not None and self._monotonic() < deadline:
                    time.sleep(0.01)
        finally:
            self._stop_network()

    def _stop_network(self) -> None:
        if self._network is not None:
            self._network.remove(self.client)
        else:
            self.client.loop_stop()

    def abandon(self) -> None:
        """Stop as a power cut would: no "offline" status, no DISCONNECT; the
        socket just closes, so the broker publishes the will (the simulator's
        power-loss fault; a real power cut needs no code)."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self._stop_network()
        sock = self.client.socket()
        if sock is not None:
            sock.close()
        if self._sender:
            self._sender.join(timeout=5)

    def subscribe(self, leaf: str, handler: Callable[[bytes], None]) -> None:
        """Route messages on this terminal's `leaf` topic to `handler`; call before start()."""
        self._handlers[topics.topic(self.terminal, leaf)] = handler

    def publish(self, leaf: str, payload: bytes, qos: int = 1) -> bool:
        """Publish on one of this terminal's topics; False when not connected.
        Never used for records: those go only through the ledger and the sender."""
        if not self._connected:
            return False
        info = self.client.publish(topics.topic(self.terminal, leaf), payload, qos=qos)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def publish_status(self) -> None:
        """Re-announce "online" with the current versions and head (after a config
        sync, and every `heartbeat` seconds: the gateway's only sign of life from
        a terminal that sells nothing, for its silence and backlog rules)."""
        self._last_status = self._monotonic()
        if self._connected:
            self.client.publish(self._status, self._online_status(), qos=1, retain=True)

    def _versions(self) -> dict:
        return self.versions() if callable(self.versions) else self.versions

    def _online_status(self) -> bytes:
        return envelope.encode_status(self.terminal, "online", time_ms=self._wall_ms(), head=self.ledger.head,
                                      acked=self.ledger.acked, versions=self._versions())

    def notify(self) -> None:
        """A row was appended: send it now rather than at the next poll."""
        with self._wake:
            self._wake.notify()

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def stalled(self) -> bool:
        """True after STALLED_AFTER re-sends in a row brought no ack: the
        gateway is gone for long, or refuses this terminal's messages whole."""
        return self._unanswered >= STALLED_AFTER

    def _resend_after(self) -> float:
        """Seconds without progress before the next re-send: ack_timeout,
        doubled for each re-send in a row that was not answered."""
        s = self.settings
        return min(s.ack_timeout * (2 ** min(self._unanswered, 16)), max(s.ack_timeout, s.resend_max))

    # -- paho callbacks (network thread)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("broker refused connection terminal=%s reason=%s", self.terminal, reason_code)
            return
        transport.no_delay(client)
        client.subscribe([(self._ack, 1)] + [(name, 1) for name in sorted(self._handlers)])
        client.publish(self._status, self._online_status(), qos=1, retain=True)
        self._last_status = self._monotonic()
        with self._wake:
            self._connected = True
            self._rewind_to = self.ledger.acked  # whatever was in flight may be gone
            self._wake.notify()
        log.info("uplink connected terminal=%s acked=%d head=%d", self.terminal, self.ledger.acked, self.ledger.head)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self._wake:
            self._connected = False
        if not self._stopping:
            log.info("uplink disconnected terminal=%s reason=%s", self.terminal, reason_code)

    def _on_message(self, client, userdata, message):
        if message.topic != self._ack:
            handler = self._handlers.get(message.topic)
            if handler is not None:
                try:
                    handler(message.payload)
                except Exception:  # a handler bug must not kill the network thread
                    log.exception("handler failed terminal=%s topic=%s", self.terminal, message.topic)
            return
        try:
            terminal, upto, seen = envelope.decode_ack(message.payload, self._key)
        except envelope.Invalid as err:
            # no MAC or a bad one: not from the gateway (or altered on the way);
            # the watermark stays, the uplink re-sends after ack_timeout
            self.refused_acks += 1
            log.warning("ack refused terminal=%s reason=%s: %s", self.terminal, err.code, err)
            return
        if terminal != self.terminal:
            log.warning("ack for another terminal ignored terminal=%s other=%s", self.terminal, terminal)
            return
        old = self.ledger.acked
        moved = self.ledger.mark_acked(upto)
        if moved and self._on_acked:
            self._on_acked(old, upto)
        with self._wake:
            if moved:
                self._last_progress = self._monotonic()
                self.last_ack_wall_ms = self._wall_ms()
                if self._unanswered >= STALLED_AFTER:
                    log.info("uplink moving again terminal=%s acked=%d", self.terminal, upto)
                self._unanswered = 0
            if seen is not None and seen > upto and upto != self._last_hole and self._cursor > upto:
                # The gateway stored later records but is missing some below them.
                self._last_hole = upto
                self._rewind_to = upto
            self._wake.notify()

    # -- sender thread

    def _send_loop(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
                self._wake.wait(timeout=min(1.0, self.settings.heartbeat))
                if self._stopping:
                    return
                if not self._connected:
                    continue
                if self._monotonic() - self._last_status >= self.settings.heartbeat:
                    self.publish_status()
                acked = self.ledger.acked
                if self._rewind_to is not None:
                    self._cursor = min(self._cursor, max(self._rewind_to, acked))
                    self._rewind_to = None
                    self._last_progress = self._monotonic()
                if self._cursor < acked:
                    self._cursor = acked
                if self._cursor > acked and self._monotonic() - self._last_progress > self._resend_after() \
                        and not self._broker_holds_back():
                    log.info("no ack progress, re-sending terminal=%s from=%d unanswered=%d", self.terminal,
                             acked + 1, self._unanswered)
                    self.resends += 1
                    self._unanswered += 1
                    if self._unanswered == STALLED_AFTER:
                        log.warning("uplink stalled terminal=%s acked=%d head=%d: %d re-sends without an ack; "
                                    "the gateway is away or refuses this terminal's messages (unsupported_version, "
                                    "terminal_mismatch); re-sending every %.0fs at most", self.terminal, acked,
                                    self.ledger.head, STALLED_AFTER, self.settings.resend_max)
                    self._cursor = acked
                    self._last_progress = self._monotonic()
            try:
                self._send_window()
            except Exception:  # keep the uplink alive; the next wake retries
                log.exception("uplink send failed terminal=%s", self.terminal)

    def _broker_holds_back(self) -> bool:
        """True while a record batch published on this connection or before
        has no PUBACK: the broker never got it, so another copy would only
        queue behind it."""
        self._unconfirmed = [info for info in self._unconfirmed if not _confirmed(info)]
        return bool(self._unconfirmed)

    def _send_window(self) -> None:
        s = self.settings
        while self._connected and not self._stopping:
            with self._wake:
                acked = self.ledger.acked
                cursor = self._cursor
                room = s.window - (cursor - acked)
                if room <= 0 or self._rewind_to is not None:
                    return
            rows = _fit(self.ledger.pending(cursor, min(s.batch, room)))
            if not rows:
                return
            payload = envelope.encode_batch(self.terminal, cursor, [text for _, text in rows])
            info = self.client.publish(self._up, payload, qos=1)
            with self._wake:
                self._unconfirmed.append(info)  # NO_CONN too: paho keeps it and sends it on reconnect
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return  # not connected: on_connect rewinds and we send again
            with self._wake:
                if cursor == acked:
                    self._last_progress = self._monotonic()
                if self._cursor == cursor:
                    self._cursor = rows[-1][0]
            self.sent_batches += 1


def _fit(rows: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The longest prefix of rows that fits one batch message."""
    budget = envelope.MAX_BATCH_BYTES - 200
    for i, (_, text) in enumerate(rows):
        budget -= len(text.encode()) + 1
        if budget < 0:
            return rows[: max(i, 1)]
    return rows


def _confirmed(info: mqtt.MQTTMessageInfo) -> bool:
    try:
        return info.is_published()
    except (ValueError, RuntimeError):  # paho refused it: nothing of it is pending
        return True
