"""The uplink: ledger records above the watermark to the gateway, in order, in
batches, QoS 1; the watermark moves only on the gateway's MACed, cumulative,
end-to-end ack (docs/protocol.md "Acks"), never on a PUBACK, exactly as the Pi
terminal's firmware/uplink.py.

When no ack comes (docs/protocol.md "When no ack comes"): the n-th re-send in
a row that brought no progress waits `ack_timeout` x 2^n, at most RESEND_MAX_S;
an ack that moves the watermark starts again at `ack_timeout`; after three
unanswered re-sends the uplink calls itself stalled (logged, `stalled`), and
never gives up.

Single-threaded, as MicroPython on a board is: `step()` is called from the
main loop between sales. Flow control as on the Pi: at most `window` records in
flight beyond the watermark; no ack progress for `ack_timeout` seconds, or an
ack whose `seen` is beyond its `upto` (the gateway holds later records but is
missing earlier ones), rewinds to the watermark and sends again; every
(re)connect rewinds too. umqtt.simple waits for each PUBACK inside `publish`,
so a batch is never queued twice behind a dead link.

The status topic says "online" (retained, with head, watermark and config
versions) on connect and every `heartbeat` seconds; the last will says
"offline".
"""

import time

from protocols import envelope, topics

RESEND_MAX_S = 60
STALLED_AFTER = 3


class Uplink:
    def __init__(self, session, ledger, key, versions, batch=8, window=envelope.SEQ_WINDOW, ack_timeout=5.0,
                 heartbeat=60.0, wall_ms=None, log=None):
        self.session = session
        self.ledger = ledger
        self.terminal = ledger.terminal
        self._key = key
        self._versions = versions            # callable -> {section: "version"}
        self.batch = batch
        self.window = window
        self.ack_timeout_ms = int(ack_timeout * 1000)
        self.heartbeat_ms = int(heartbeat * 1000)
        self._wall_ms = wall_ms
        self._log = log or (lambda *a: None)
        self.cursor = ledger.acked
        self._last_progress = time.ticks_ms()
        self._last_status = time.ticks_ms()
        self._last_hole = None
        self.sent_batches = 0
        self.resends = 0
        self.refused_acks = 0
        self._misses = 0             # re-sends in a row that brought no progress
        self.stalled = False
        self._up = topics.topic(self.terminal, topics.UP)
        self._status = topics.topic(self.terminal, topics.STATUS)
        session.subscribe(topics.topic(self.terminal, topics.ACK), self.on_ack)

    def offline_status(self):
        return envelope.encode_status(self.terminal, "offline")

    def on_connect(self):
        """Every (re)connect: whatever was in flight may be gone."""
        self.cursor = self.ledger.acked
        self._last_progress = time.ticks_ms()
        self.publish_status()

    status_due = False

    def announce(self):
        """Publish the status at the next step (safe from a message handler,
        e.g. after a config section was stored)."""
        self.status_due = True

    def publish_status(self):
        self.status_due = False
        self._last_status = time.ticks_ms()
        payload = envelope.encode_status(self.terminal, "online", time_ms=self._wall_ms(), head=self.ledger.head,
                                         acked=self.ledger.acked, versions=self._versions())
        self.session.publish(self._status, payload, retain=True)

    def on_ack(self, payload):
        try:
            terminal, upto, seen = envelope.decode_ack(payload, self._key)
        except envelope.Invalid as err:
            self.refused_acks += 1   # not the gateway's (no MAC, a bad one): the watermark stays
            self._log("ack refused: %s" % err.code)
            return
        if terminal != self.terminal:
            return
        if self.ledger.mark_acked(upto):
            self._last_progress = time.ticks_ms()
            self._misses = 0
            if self.stalled:
                self.stalled = False
                self._log("uplink moving again acked=%d" % upto)
        if seen is not None and seen > upto and upto != self._last_hole and self.cursor > upto:
            self._last_hole = upto
            self.cursor = max(upto, self.ledger.acked)

    def step(self):
        """Send what the window allows; rewind on a silent gateway; heartbeat."""
        if not self.session.connected:
            return
        now = time.ticks_ms()
        if self.status_due or time.ticks_diff(now, self._last_status) >= self.heartbeat_ms:
            self.publish_status()
        acked = self.ledger.acked
        if self.cursor < acked:
            self.cursor = acked
        wait = min(self.ack_timeout_ms << min(self._misses, 16), RESEND_MAX_S * 1000)
        if self.cursor > acked and time.ticks_diff(now, self._last_progress) > wait:
            self._log("no ack progress, re-sending from %d" % (acked + 1))
            self.resends += 1
            self._misses += 1
            if self._misses >= STALLED_AFTER and not self.stalled:
                self.stalled = True
                self._log("uplink stalled acked=%d head=%d" % (acked, self.ledger.head))
            self.cursor = acked
            self._last_progress = now
        while self.session.connected and self.cursor - self.ledger.acked < self.window:
            room = self.window - (self.cursor - self.ledger.acked)
            rows = self.ledger.pending(self.cursor, min(self.batch, room))
            if not rows:
                return
            after = self.cursor
            payload = envelope.encode_batch(self.terminal, after, [text for _, text in rows])
            if after == self.ledger.acked:
                self._last_progress = time.ticks_ms()
            if not self.session.publish(self._up, payload):
                return                 # the session dropped: the reconnect rewinds
            self.sent_batches += 1
            self._log("batch sent after=%d upto=%d" % (after, rows[-1][0]))
            if self.cursor == after:
                self.cursor = rows[-1][0]
            self.session.poll()        # acks that came meanwhile
