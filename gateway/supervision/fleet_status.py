"""Fleet view from the terminals' retained status messages.

Ingest already keeps online/offline and `head` per terminal; the status message
also carries the terminal's clock and software versions, which the fleet page
shows. This watcher subscribes to the retained statuses with a session of its
own (so it sees every terminal's last status at once on connect) and keeps
`terminal_status`. Clock skew is measured on "online" messages only: they are
published the moment the terminal connects, so receive time minus the
terminal's stamp is the skew plus a network delay of milliseconds; retained
copies replayed later are recognised by the broker's retain flag and skipped.

Statuses are stored in one transaction every `FLUSH_S`, the latest per
terminal: a thousand terminals announcing themselves every few seconds would
otherwise be hundreds of separate commits a second on the gateway's database.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from gateway import store
from gateway.store import fleet
from protocols import envelope, topics, transport
from protocols.clock import wall_ms as now_ms

log = logging.getLogger(__name__)

FLUSH_S = 0.5


def apply(conn, terminal: str, payload: bytes, received: int, retained: bool) -> bool:
    try:
        m = envelope.decode_status(payload)
    except envelope.Invalid as err:
        log.warning("bad status terminal=%s: %s", terminal, err)
        return False
    if m["terminal"] != terminal:
        return False
    skew = None
    if m["state"] == "online" and m.get("time") is not None and not retained:
        skew = received - m["time"]
    fleet.save_status(conn, terminal, m["state"], m.get("time"), received, skew, m.get("versions"))
    return True


class FleetWatcher:
    def __init__(self, db_path: str, broker: str, username: str | None = None, password: str | None = None,
                 client_id: str = "gateway-fleet", wall_ms: Callable[[], int] = now_ms,
                 ca: str | None = None, cert: str | None = None, key: str | None = None):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.conn = store.connect(db_path)
        self.lock = threading.Lock()
        self.broker = broker
        self.wall_ms = wall_ms
        self._pending: dict[str, tuple[bytes, int, bool]] = {}   # terminal -> (payload, received, retained)
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="fleet-status", daemon=True)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                             protocol=mqtt.MQTTv311)
        if username:
            client.username_pw_set(username, password)
        self._host, self._port = transport.prepare(client, broker, ca, cert, key)
        client.reconnect_delay_set(0.2, 5)
        client.on_connect = lambda c, u, f, rc, p: c.subscribe(topics.ROOT + "/+/" + topics.STATUS, 1)
        client.on_message = self._on_message
        self.client = client

    def _on_message(self, client, userdata, message):
        parsed = topics.parse(message.topic)
        if parsed is None or parsed[1] != topics.STATUS:
            return
        received = self.wall_ms()
        with self.lock:
            held = self._pending.get(parsed[0])
            if held is not None and held[0] == message.payload:
                return
            if held is not None and not held[2] and message.retain:
                return   # a live status already waits: the replayed copy is older
            self._pending[parsed[0]] = (message.payload, received, bool(message.retain))

    def flush(self) -> int:
        """Store the statuses received since the last flush; returns how many."""
        with self.lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return 0
        try:
            with store.transaction(self.conn):
                for terminal, (payload, received, retained) in pending.items():
                    apply(self.conn, terminal, payload, received, retained)
        except store.db_errors():
            log.exception("could not store %d statuses", len(pending))
        return len(pending)

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_S):
            self.flush()

    def start(self) -> None:
        self.client.connect_async(self._host, self._port, keepalive=30)
        self.client.loop_start()
        self._flusher.start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self._stop.set()
        if self._flusher.is_alive():
            self._flusher.join(timeout=5)
        self.flush()
        self.conn.close()
