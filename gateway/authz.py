"""Online authorization: requests in from the network thread, decided and
committed on one worker, answered after the commit.

The worker drains every request queued so far into one transaction (the same
group commit as ingest: one fsync for many decisions, which is what keeps the
p99 round trip low with fifty terminals asking at once). Requests in a group are
decided one after another against the balances as the earlier ones left them,
so two shops selling to the same subject at the same moment cannot both take
the last of a quota. Responses go out only after COMMIT: an "approved" the
terminal sees is already counted here.

It shares the store's connection and lock with ingest: a lock handoff costs
microseconds, where two SQLite connections would contend through the busy
handler's sleeps (up to 100 ms).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

from gateway import quota
from gateway.store import Store
from protocols import authz, policy
from protocols.clock import wall_ms as now_ms

log = logging.getLogger(__name__)

MAX_GROUP = 200
SWEEP_EVERY_S = 60.0


@dataclass
class AuthStats:
    requests: int = 0
    rejected: int = 0
    approved: int = 0
    refused: int = 0
    replayed: int = 0
    commits: int = 0


class AuthService:
    def __init__(self, store: Store, publish: Callable[[str, bytes], None], cache: quota.ConfigCache,
                 wall_ms: Callable[[], int] = now_ms,
                 key_for: Callable[[str], bytes | None] | None = None,
                 hold_ttl_ms: int = quota.HOLD_TTL_MS, monotonic=time.monotonic):
        self.store = store
        self.publish = publish          # (terminal, payload) -> publish on its auth/resp topic
        self.cache = cache
        self.wall_ms = wall_ms
        self.key_for = key_for or store.terminal_key
        self.hold_ttl_ms = hold_ttl_ms
        self._monotonic = monotonic
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._last_sweep = monotonic()
        self.stats = AuthStats()

    # -- network thread

    def submit(self, terminal: str, payload: bytes) -> None:
        """Check shape and MAC here, decide on the worker. Anything that fails is
        logged and dropped: without a verified request there is nobody to
        answer (a response is MACed with the key of the terminal it goes to)."""
        self.stats.requests += 1
        try:
            request = authz.decode_request(payload)
            if request["terminal"] != terminal:
                raise authz.Invalid("terminal_mismatch", "request says %s" % request["terminal"])
            key = self.key_for(terminal)
            if key is None:
                raise authz.Invalid("unknown_terminal", terminal)
            authz.verify_request(request, key)
        except authz.Invalid as err:
            self.stats.rejected += 1
            log.warning("authorization request rejected terminal=%s reason=%s detail=%s", terminal, err.code, err.detail)
            return
        self._queue.put((terminal, request, key))

    # -- worker

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="authz", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=5.0)
            except queue.Empty:
                self._maybe_sweep()
                continue
            if item is None:
                return
            group = [item]
            while len(group) < MAX_GROUP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                group.append(item)
            try:
                answers = self._decide(group)
            except Exception:
                # Nothing committed, nothing answered: the terminals decide offline.
                log.exception("authorization transaction failed requests=%d", len(group))
                continue
            for terminal, payload in answers:
                try:
                    self.publish(terminal, payload)
                except Exception:
                    log.exception("authorization response publish failed terminal=%s", terminal)
            self._maybe_sweep()

    def _decide(self, group: list) -> list[tuple[str, bytes]]:
        now = self.wall_ms()
        conn = self.store.conn
        answers = []
        with self.store.lock:
            self.cache.get(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                for terminal, request, key in group:
                    conn.execute("SAVEPOINT authz_one")
                    try:
                        fields = quota.authorize(conn, self.cache, terminal, request, now)
                        conn.execute("RELEASE authz_one")
                    except Exception as err:  # noqa: BLE001 - one bad request must not fail the group
                        conn.execute("ROLLBACK TO authz_one")
                        conn.execute("RELEASE authz_one")
                        if isinstance(err, policy.PolicyError):
                            log.warning("authorization undecidable terminal=%s sale=%s: %s",
                                        terminal, request["sale_id"], err)
                            fields = {"status": authz.ERROR, "code": err.code}
                        else:
                            log.exception("authorization failed terminal=%s sale=%s", terminal, request["sale_id"])
                            fields = {"status": authz.ERROR, "code": "auth_unavailable"}
                    answers.append((terminal, key, request, fields))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        self.stats.commits += 1
        out = []
        for terminal, key, request, fields in answers:
            decision = fields.get("decision")
            if fields.get("replayed"):
                self.stats.replayed += 1
            elif decision and decision["decision"] != "refuse":
                self.stats.approved += 1
            else:
                self.stats.refused += 1
            log.info("authorization terminal=%s sale=%s subject=%s decision=%s auth=%s codes=%s",
                     terminal, request["sale_id"], request["subject"],
                     decision["decision"] if decision else fields.get("code"), fields.get("auth"),
                     ",".join(decision["codes"]) if decision else "")
            payload = authz.encode_response(key, terminal, request["id"], request["sale_id"], now, **fields)
            out.append((terminal, payload))
        return out

    def _maybe_sweep(self) -> None:
        if self._monotonic() - self._last_sweep < SWEEP_EVERY_S:
            return
        self._last_sweep = self._monotonic()
        conn = self.store.conn
        try:
            with self.store.lock:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    quota.release_stale(conn, self.wall_ms(), self.hold_ttl_ms)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except Exception:
            log.exception("sweeping stale authorizations failed")
