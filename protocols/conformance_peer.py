"""The conformance kit's gateway: the gateway's side of wire protocol v1,
re-implemented from docs/protocol.md and `protocols` alone, so that a
terminal passing the kit is shown to need nothing but the spec.

It never imports `gateway` (tests/test_conformance.py checks that). It keeps
what a scenario needs to judge a terminal from outside:

- every record received, verified as the gateway would (schema, MAC under
  the terminal's key, the terminal named by the topic) and remembered by seq
  with its digest, so a seq that comes back with other content (a re-used
  seq), a `prev` that does not match, or a batch that skips rows after its
  `after` is a violation however the scenario goes;
- the batches in arrival order (`after`, first and last seq, when), which
  is how the terminal's watermark shows from outside: a terminal re-sends
  from its watermark, so the `after` of a re-send is the watermark;
- the terminal's status messages, authorization requests and the records'
  `sale_id`s.

Acks are published as the gateway does (retained, QoS 1, MACed, `seen` = the
batch's last seq) while `acking` is on; scenarios switch it off to withhold
them, and publish doctored ones themselves.

CPython only: paho-mqtt is imported here and in the kit's other modules,
nowhere else in `protocols`.
"""

import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocols import authz, canonical, configsync, envelope, topics, transport


class Batch:
    """One batch as received: where it starts (`after`), its seqs, when."""

    def __init__(self, after, first, last, count, at):
        self.after, self.first, self.last, self.count, self.at = after, first, last, count, at

    def __repr__(self):
        return "Batch(after=%d, %d..%d)" % (self.after, self.first, self.last)


class KitGateway:
    def __init__(self, broker, terminal, key, ca=None, username=None, password=None, cert=None, cert_key=None,
                 monotonic=time.monotonic, wall_ms=None):
        self.terminal = terminal
        self.key = key
        self._monotonic = monotonic
        self._wall_ms = wall_ms or (lambda: int(time.time() * 1000))
        self.cond = threading.Condition()
        self.acking = True
        self.connected = False
        self.connects = 0
        self.violations = []          # (code, detail): breaches of the protocol, whatever the scenario
        self.batches = []             # Batch, in arrival order
        self.digests = {}             # seq -> digest of the record first received with it
        self.records = {}             # seq -> record dict
        self.by_sale = {}             # sale_id -> [seq, ...]
        self.base = None              # seqs <= base were accounted for before the kit started
        self.acked = 0                # highest upto the kit has published
        self.genuine = 0              # highest watermark the terminal may claim: genuine acks within its head
        self.statuses = []            # (monotonic time, status dict)
        self._head_seen = None
        self.requests = []            # (monotonic time, request dict)
        self.auth_reply = None        # callable(request) -> None; scenarios set it
        self._topics = {leaf: topics.topic(terminal, leaf)
                        for leaf in (topics.UP, topics.STATUS, topics.AUTH_REQ, topics.ACK, topics.CONFIG,
                                     topics.AUTH_RESP)}
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="conformance-%s" % terminal,
                             clean_session=True, protocol=mqtt.MQTTv311)
        if username:
            client.username_pw_set(username, password)
        self._host, self._port = transport.prepare(client, broker, ca, cert, cert_key)
        client.reconnect_delay_set(0.2, 2)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    # -- lifecycle

    def start(self):
        self.client.connect_async(self._host, self._port, keepalive=15)
        self.client.loop_start()

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()

    def wait(self, predicate, timeout):
        """True once `predicate()` holds (checked under the lock), False after `timeout` s."""
        deadline = self._monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - self._monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.2))
            return True

    # -- what a scenario reads (call under self.cond or accept a racy read)

    def now(self):
        return self._monotonic()

    def head(self):
        """Highest seq received."""
        return max(self.digests) if self.digests else (self.base or 0)

    def contiguous(self):
        """Highest n with every seq from base+1 to n received."""
        if self.base is None:
            return 0
        n = self.base
        while n + 1 in self.digests:
            n += 1
        return n

    def last_status(self):
        return self.statuses[-1][1] if self.statuses else None

    def resends_since(self, at):
        """Batches received after `at` that repeat a seq the kit already had."""
        return [b for b in self.batches if b.at >= at and b.resend]

    # -- publishing

    def publish_ack(self, upto, seen=None, key=None, terminal=None, retain=True):
        if key is None and terminal is None:
            with self.cond:
                if upto <= self.head():
                    self.genuine = max(self.genuine, upto)
        payload = envelope.encode_ack(key or self.key, terminal or self.terminal, upto, seen)
        return self.publish_raw(topics.ACK, payload, retain=retain)

    def publish_raw(self, leaf, payload, retain=False):
        info = self.client.publish(self._topics[leaf], payload, qos=1, retain=retain)
        return info

    def ack_now(self):
        """Ack everything received without a hole, as the gateway would."""
        with self.cond:
            upto = self.contiguous()
            self.acked = max(self.acked, upto)
        if upto:
            self.publish_ack(upto, self.head())
        return upto

    def push_section(self, section, version, content, chunk_chars, twice=False, bad_mac_index=None):
        """Publish a retained manifest and the section's chunks (each twice
        with `twice`; the chunk at `bad_mac_index` with a wrong MAC)."""
        text = configsync.section_text(content)
        manifest = configsync.encode_manifest(self.key, self.terminal, self._wall_ms(), {
            section: {"version": version, "digest": configsync.digest(text), "size": len(text)}})
        self.publish_raw(topics.CONFIG, manifest, retain=True)
        chunks = configsync.encode_chunks(self.key, self.terminal, self._wall_ms(), section, version, text,
                                          chunk_chars=chunk_chars)
        for index, payload in enumerate(chunks):
            if index == bad_mac_index:
                message = canonical.loads(payload)
                message["mac"] = ("0" if message["mac"][0] != "0" else "1") + message["mac"][1:]
                payload = canonical.encode(message)
            for _ in range(2 if twice else 1):
                self.publish_raw(topics.CONFIG, payload)
        return len(chunks)

    # -- paho callbacks (network thread)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            with self.cond:
                self.violations.append(("kit_not_connected", "broker refused the kit: %s" % reason_code))
                self.cond.notify_all()
            return
        transport.no_delay(client)
        client.subscribe([(self._topics[topics.UP], 1), (self._topics[topics.STATUS], 1),
                          (self._topics[topics.AUTH_REQ], 1)])
        with self.cond:
            self.connected = True
            self.connects += 1
            self.cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self.cond:
            self.connected = False
            self.cond.notify_all()

    def _on_message(self, client, userdata, message):
        try:
            if message.topic == self._topics[topics.UP]:
                self._on_batch(message.payload)
            elif message.topic == self._topics[topics.STATUS]:
                self._on_status(message.payload)
            elif message.topic == self._topics[topics.AUTH_REQ]:
                self._on_request(message.payload)
        except Exception as err:  # a kit bug must show in the table, not kill the network thread
            with self.cond:
                self.violations.append(("kit_error", "%s: %r" % (message.topic, err)))
                self.cond.notify_all()

    def _violation(self, code, detail):
        self.violations.append((code, detail))
        self.cond.notify_all()

    def _on_status(self, payload):
        if not payload:
            return   # a cleared retained status
        try:
            status = envelope.decode_status(payload)
        except envelope.Invalid as err:
            with self.cond:
                self._violation("status_" + err.code, str(err))
            return
        with self.cond:
            if status["terminal"] != self.terminal:
                self._violation("terminal_mismatch", "status names %s" % status["terminal"])
            if self.base is None and status["state"] == "online" and "acked" in status:
                self.base = status["acked"]
            self._judge_status(status)
            self.statuses.append((self._monotonic(), status))
            self.cond.notify_all()

    def _judge_status(self, status):
        """Under the lock: what the terminal says of itself must fit what the
        kit did. The first status (retained, from before the kit) sets the
        scene; after it, `acked` never exceeds a genuine ack the kit sent (a
        terminal that took a PUBACK or a forged ack for one claims more), and
        `head` never goes back (a terminal that re-uses seqs shows it here)."""
        acked, head = status.get("acked"), status.get("head")
        if not self.statuses:
            self.genuine = max(self.genuine, acked or 0)
            self._head_seen = head
            return
        if acked is not None and acked > self.genuine:
            self._violation("status_acked_unacknowledged", "status says acked=%d; the highest genuine ack within "
                            "the terminal's head was upto=%d" % (acked, self.genuine))
        if head is not None:
            if self._head_seen is not None and head < self._head_seen:
                self._violation("head_went_back", "status says head=%d after head=%d" % (head, self._head_seen))
            self._head_seen = max(head, self._head_seen or 0)

    def _on_request(self, payload):
        try:
            request = authz.verify_request(authz.decode_request(payload), self.key)
        except authz.Invalid as err:
            with self.cond:
                self._violation("auth_request_" + err.code, str(err))
            return
        with self.cond:
            if request["terminal"] != self.terminal:
                self._violation("terminal_mismatch", "request names %s" % request["terminal"])
                return
            self.requests.append((self._monotonic(), request))
            reply = self.auth_reply
            self.cond.notify_all()
        if reply is not None:
            reply(request)

    def _on_batch(self, payload):
        now = self._monotonic()
        try:
            terminal, after, raw = envelope.decode_batch(payload)
        except envelope.Invalid as err:
            with self.cond:
                self._violation("batch_" + err.code, str(err))
            return
        if terminal != self.terminal:
            with self.cond:
                self._violation("terminal_mismatch", "batch on %s's topic names %s" % (self.terminal, terminal))
            return
        checked = []
        for record in raw:
            try:
                digest, _ = envelope.verify_record(record, self.key)
            except envelope.Invalid as err:
                with self.cond:
                    self._violation("record_" + err.code, str(err))
                return
            if record["terminal"] != self.terminal:
                with self.cond:
                    self._violation("terminal_mismatch", "record seq %d names %s" % (record["seq"], record["terminal"]))
                return
            checked.append((record, digest))
        with self.cond:
            self._judge_batch(after, checked, now)
            ack = self.acking
            upto = self.contiguous()
            if ack:
                self.acked = max(self.acked, upto)
            self.cond.notify_all()
        if ack and upto:
            self.publish_ack(upto, checked[-1][0]["seq"])

    def _judge_batch(self, after, checked, now):
        """Under the lock: the batch's own order, and each record against what
        the kit holds (same seq, same record; `prev` = the digest before)."""
        if self.base is None:
            self.base = after
        expected = after + 1
        resend = False
        for record, digest in checked:
            seq = record["seq"]
            if seq != expected:
                self._violation("batch_not_contiguous",
                                "batch after %d holds seq %d where %d belongs" % (after, seq, expected))
            expected = seq + 1
            known = self.digests.get(seq)
            if known is not None:
                resend = True
                if known != digest:
                    self._violation("seq_reused", "seq %d came again with other content" % seq)
                continue
            before = self.digests.get(seq - 1)
            if seq == 1 and record["prev"] != envelope.GENESIS:
                self._violation("chain_break", "seq 1 does not start from the genesis digest")
            elif before is not None and record["prev"] != before:
                self._violation("chain_break", "seq %d's prev is not the digest of seq %d" % (seq, seq - 1))
            following = self.records.get(seq + 1)
            if following is not None and following["prev"] != digest:
                self._violation("chain_break", "seq %d's prev is not the digest of seq %d" % (seq + 1, seq))
            self.digests[seq] = digest
            self.records[seq] = record
            sale_id = record["body"].get("sale_id")
            if sale_id is not None:
                self.by_sale.setdefault(sale_id, []).append(seq)
        batch = Batch(after, checked[0][0]["seq"], checked[-1][0]["seq"], len(checked), now)
        batch.resend = resend
        self.batches.append(batch)
