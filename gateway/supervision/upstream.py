"""Upstream feed to the provincial supervision platform: records and case
outcomes from the durable outbox (`upstream_outbox`), in id order, in signed
batches over HTTP, retried with capped exponential backoff.

Delivery contract with the platform (docs/supervision.md):
- POST <endpoint>, body JSON {"source", "first", "last", "items": [{"id",
  "kind", "created", "payload"}]}, items in strictly increasing `id`;
- header `X-Agri-Signature: sha256=<hex HMAC-SHA256(key, body)>`, header
  `X-Agri-Batch: <first>-<last>`;
- any 2xx means "stored"; anything else, or no answer, means "send again".
A batch is marked sent only after a 2xx, and the next batch starts after it,
so the platform sees every item, in order; when a 2xx is lost on the way back
the same ids come again, and the platform drops ids at or below the last it
stored (ids only ever grow). A platform outage only grows the outbox.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import urllib.error
import urllib.request
from typing import Callable

from gateway import store
from gateway.store import transaction, upstream_outbox

log = logging.getLogger(__name__)


def sign(key: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def backoff_ms(failures: int, base_ms: int, cap_ms: int) -> int:
    """base x 2^(n-1), capped: 0.5 s, 1 s, 2 s ... 5 min. No jitter needed:
    there is one sender per gateway, so no thundering herd to spread."""
    return min(cap_ms, base_ms * (2 ** max(0, min(failures - 1, 30))))


class RecordFeed:
    """A follower hook (`Ingest.follow`): every stored record goes into the outbox in the
    record's own transaction."""

    def __call__(self, conn, terminal: str, entry, now: int) -> None:
        upstream_outbox.enqueue(conn, now, "record", {"terminal": terminal, "seq": entry.seq, "type": entry.type,
                                                      "time": entry.time, "received": now,
                                                      "record": json.loads(entry.text)})


class Sender:
    def __init__(self, db_path: str, endpoint: str, key: bytes, clock: Callable[[], int], source: str = "gateway",
                 batch: int = 200, base_backoff_ms: int = 500, max_backoff_ms: int = 300_000, timeout: float = 10.0):
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError("upstream endpoint must be an http:// or https:// URL")
        self.conn = store.connect(db_path)
        upstream_outbox.init_state(self.conn)
        self.endpoint, self.key, self.clock, self.source = endpoint, key, clock, source
        self.batch, self.base, self.cap, self.timeout = batch, base_backoff_ms, max_backoff_ms, timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send_once(self) -> int:
        """Send the oldest unsent batch if one is due; returns items delivered
        (0 when nothing was due, nothing pending, or the attempt failed)."""
        now = self.clock()
        state = upstream_outbox.state(self.conn)
        if state["next_attempt"] and now < state["next_attempt"]:
            return 0
        rows = upstream_outbox.unsent(self.conn, self.batch)
        if not rows:
            return 0
        first, last = rows[0][0], rows[-1][0]
        items = ",".join('{"created":%d,"id":%d,"kind":%s,"payload":%s}' % (c, i, json.dumps(k), p)
                         for i, k, c, p in rows)
        body = ('{"first":%d,"items":[%s],"last":%d,"source":%s}' % (first, items, last, json.dumps(self.source))).encode()
        request = urllib.request.Request(self.endpoint, data=body, method="POST", headers={
            "Content-Type": "application/json", "X-Agri-Signature": sign(self.key, body),
            "X-Agri-Batch": f"{first}-{last}"})
        error = None
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                if not 200 <= response.status < 300:
                    error = f"HTTP {response.status}"
        except urllib.error.HTTPError as err:
            error = f"HTTP {err.code}"
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            error = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
        now = self.clock()
        with transaction(self.conn):
            if error is None:
                upstream_outbox.delivered(self.conn, first, last, now)
            else:
                failures = state["failures"] + 1
                upstream_outbox.failed(self.conn, now, error, failures, now + backoff_ms(failures, self.base, self.cap))
        if error is not None:
            log.warning("upstream batch %d-%d failed (%s); will retry", first, last, error)
            return 0
        log.info("upstream batch %d-%d delivered", first, last)
        return len(rows)

    def run(self, idle: float = 1.0) -> None:
        while not self._stop.is_set():
            try:
                sent = self.send_once()
            except Exception:
                log.exception("upstream sender failed")
                sent = 0
            if not sent:
                self._stop.wait(idle)

    def start(self, idle: float = 1.0) -> None:
        self._thread = threading.Thread(target=self.run, args=(idle,), name="upstream", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.timeout + 5)
        self.conn.close()
