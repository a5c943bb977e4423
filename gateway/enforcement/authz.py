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

Before anything is decided, the request must prove the identity it claims
(`authz.check_proof`): a card by its signed payload and UID, checked against
the registry keys (`gateway subjects keys add`) and the revocation list, and
naming the claimed subject; a face by the match the terminal signed, for a
subject enrolled here and served by the terminal's shop (its gallery holds
nobody else); an override by its reason. A request without that proof is
refused with `identity_unproven` and consumes nothing: a terminal's key proves
only which terminal asks. The answer carries the subject's registry entry only
to a terminal whose shop serves the subject's area, or that showed the
subject's card (`registry.serves`): a terminal cannot read the registry of
other towns by asking about its subjects.

`check_identity` is that check on its own, for a request or for a sale
record's body (the same fields: subject, identity, card, proof): the
supervision rules run it on offline sales when their records arrive
(`gateway.supervision.rules.proof`), so an offline card is judged exactly as an online one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from gateway.enforcement import quota, registry
from gateway.store import Store, savepoint, transaction
from gateway.store import faces as faces_store
from gateway.store import quota as quota_store
from gateway.store import fleet, registry as registry_store
from protocols import authz, card, configsync, policy
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
    unproven: int = 0                                          # refused: identity not proven
    overrides: dict[str, int] = field(default_factory=dict)   # shop -> clerk overrides approved


class IdentityContext:
    """What a card proof is checked against: the trusted registry keys and the
    revocation list, read again when either changes (two cheap queries per
    group of requests; a revocation applies from the next group on)."""

    def __init__(self):
        self._stamp = None
        self.trusted: dict = {}
        self.revoked: frozenset = frozenset()

    def refresh(self, conn) -> "IdentityContext":
        revocations = registry_store.section_version(conn, configsync.REVOCATIONS)
        stamp = (registry_store.keys_stamp(conn), revocations)
        if stamp != self._stamp:
            self.trusted = card.trust_store(registry_store.trusted_keys(conn))
            self.revoked = frozenset(registry.revocations(conn)) if revocations is not None else frozenset()
            self._stamp = stamp
        return self


def check_identity(conn, claim: dict, today: str, context: IdentityContext, area: dict, judge_face: bool = True):
    """The verified card of `claim` (None when it claims no card), or
    authz.Invalid: the proof fails (`authz.check_proof` against `context`'s
    registry keys and revocations, on `today`), or claims a face match the
    terminal cannot have made (a subject not enrolled here, or outside the
    shop's `area`, whose gallery holds no one else).

    `claim` is an authorization request or a sale record's body: both name
    `subject`, `identity`, `card` and `proof` alike. `judge_face` False: the
    face part is not judged (no registry imported to judge it by)."""
    verified = authz.check_proof(claim, context.trusted, today, context.revoked)
    if judge_face and "face" in authz.NEEDS[claim["identity"]]:
        subject = claim["subject"]
        entry = registry_store.subject_entry(conn, subject)
        if entry is None or not registry.serves(area, entry):
            raise authz.Invalid("identity_unproven", f"face match for {subject}, not in the shop's gallery")
        if not faces_store.is_enrolled(conn, subject):
            raise authz.Invalid("identity_unproven", f"face match for {subject}, who has no face enrolled")
    return verified


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
        self.identity = IdentityContext()

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
                self._reconnect()
                continue
            for terminal, payload in answers:
                try:
                    self.publish(terminal, payload)
                except Exception:
                    log.exception("authorization response publish failed terminal=%s", terminal)
            self._maybe_sweep()

    def _reconnect(self) -> None:
        """A failed transaction may mean the database went away (PostgreSQL
        restarted): a fresh connection, so the next requests are decided
        online again; if it is still down, the next failure tries again."""
        try:
            self.store.reconnect()
        except Exception as err:
            log.warning("database unreachable for authorization (%s); terminals decide offline meanwhile", err)

    def _decide(self, group: list) -> list[tuple[str, bytes]]:
        now = self.wall_ms()
        conn = self.store.conn
        answers = []
        with self.store.lock:
            self.cache.get(conn)
            with transaction(conn):
                self.identity.refresh(conn)
                for terminal, request, key in group:
                    try:
                        with savepoint(conn, "authz_one"):
                            fields = self.authorize(conn, terminal, request, now)
                    except Exception as err:  # noqa: BLE001 - one bad request must not fail the group
                        if isinstance(err, policy.PolicyError):
                            log.warning("authorization undecidable terminal=%s sale=%s: %s",
                                        terminal, request["sale_id"], err)
                            fields = {"status": authz.ERROR, "code": err.code}
                        else:
                            log.exception("authorization failed terminal=%s sale=%s", terminal, request["sale_id"])
                            fields = {"status": authz.ERROR, "code": "auth_unavailable"}
                    answers.append((terminal, key, request, fields))
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

    def authorize(self, conn, terminal: str, request: dict, now: int) -> dict:
        """One request inside the group's transaction: its identity proof
        first, then the quota ledger's decision, then what of the subject's
        registry entry this terminal may see. Returns the response fields."""
        area = registry.terminal_area(conn, terminal)
        shown = None
        if quota_store.authorization_for_sale(conn, terminal, request["sale_id"]) is None:  # a repeated request gets its first answer, whatever its proof says now
            try:
                shown = self._proven(conn, request, now, area)
            except authz.Invalid as err:
                self.stats.unproven += 1
                log.warning("authorization refused: identity unproven terminal=%s sale=%s subject=%s identity=%s "
                            "reason=%s detail=%s", terminal, request["sale_id"], request["subject"],
                            request["identity"], err.code, err.detail)
                return {"status": authz.OK,
                        "decision": authz.unproven("online", authz.local_date(now), request["cart"], err)}
        fields = quota.authorize(conn, self.cache, terminal, request, now)
        entry = fields.get("subject")
        if entry is not None and not (shown is not None and shown.subject_id == entry["id"]) \
                and not registry.serves(area, entry):
            # neither the terminal's area nor the subject's card: the decision, not the registry
            for name in ("subject", "used", "rev", "acked"):
                fields.pop(name, None)
        decision = fields.get("decision")
        if request["identity"] == "override" and not fields.get("replayed") and decision \
                and decision["decision"] != "refuse":
            shop = fleet.terminal_shop(conn, terminal) or terminal
            self.stats.overrides[shop] = self.stats.overrides.get(shop, 0) + 1
            reason = request["proof"]["override"]
            log.info("clerk override approved terminal=%s shop=%s sale=%s subject=%s reason=%s overrides=%d",
                     terminal, shop, request["sale_id"], request["subject"], reason["reason"],
                     self.stats.overrides[shop])
        return fields

    def _proven(self, conn, request: dict, now: int, area: dict):
        """`check_identity` on the gateway's own date."""
        return check_identity(conn, request, authz.local_date(now), self.identity, area)

    def _maybe_sweep(self) -> None:
        if self._monotonic() - self._last_sweep < SWEEP_EVERY_S:
            return
        self._last_sweep = self._monotonic()
        conn = self.store.conn
        try:
            with self.store.lock:
                with transaction(conn):
                    quota.release_stale(conn, self.wall_ms(), self.hold_ttl_ms)
        except Exception:
            log.exception("sweeping stale authorizations failed")
