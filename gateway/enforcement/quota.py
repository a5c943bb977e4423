"""The authoritative quota ledger: the subject registry, the used balances, the
online authorizations, and how each sale, void and refusal record moves them.

Three writers touch balances, all inside a database transaction they already
hold, so a change commits atomically with what caused it:
- an online authorization (gateway/enforcement/authz.py): decide with `protocols.policy`
  against these balances and commit the consumption (authorization =
  consumption);
- a record stored by ingest (`RecordApplier`, a follower of the stored records,
  gateway/ingest/follow.py, in the transaction that moves its cursor): an offline sale
  is applied, an online sale is matched to its authorization (only a
  difference is applied, normally none), a void gives back what its sale
  consumed, a refusal after a late authorization releases it. Ingest stores
  each (terminal, seq) once and the follower visits each once, so each record
  moves balances exactly once;
- the sweeper, which releases authorizations whose sale record never came.

This module decides; the ledger's rows are read and written by its
repository, gateway/store/quota.py. Balances live in `quota_used` (subject,
category, period) -> used, changed only by `gateway.store.quota.move`, which
also appends the audit row to `quota_moves`. On SQLite the surrounding BEGIN
IMMEDIATE (`gateway.store.transaction`) makes read-decide-write one serial
step. On PostgreSQL each move is one atomic statement, `INSERT ... ON CONFLICT
(subject, category, period) DO UPDATE SET used = quota_used.used +
excluded.used`, and a decision holds its subject's lock (`gateway.store.lock`
on "quota:<subject>") from its reads to its commit, so any worker can serve
any terminal.

A balance pushed below zero (offline sales in several shops that each saw
enough left) raises one `over_quota` violation per subject and period, naming
the shops whose offline sales made it.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from gateway.store import quota as quota_store
from gateway.store import registry as registry_store
from gateway.store import fleet, violations
from gateway.store import lock, savepoint
from protocols import authz, catalogue, clock, configsync, policy, reasons

log = logging.getLogger(__name__)

reasons.register({
    "over_quota": ("离线销售合计超出定额（多店离线销售）", "Offline sales together exceed the subject's quota (several shops)"),
    "auth_reused": ("同一授权号被多笔销售使用", "One authorization id was used by more than one sale"),
    "quota_apply_failed": ("记录未能计入定额台账，请核查", "The record could not be applied to the quota ledger: check it"),
})

HOLD_TTL_MS = 24 * 3600 * 1000  # an authorization without its sale record is released after this

GLOBAL_SECTIONS = (configsync.CATALOGUE, configsync.PARAMS, configsync.REVOCATIONS)


def auth_wire_id(rowid: int) -> str:
    return "A%d" % rowid


def auth_rowid(wire: str | None) -> int | None:
    if isinstance(wire, str) and wire[:1] == "A" and wire[1:].isdigit():
        return int(wire[1:])
    return None


# ---------------------------------------------------------------- config

class ConfigCache:
    """Catalogue and params as last imported, re-read when their version changes
    (checked at most every `refresh_s`, so the hot paths don't query each time)."""

    def __init__(self, refresh_s: float = 1.0, monotonic=time.monotonic):
        self.refresh_s = refresh_s
        self._monotonic = monotonic
        self._checked = -1e9
        self._lock = threading.Lock()
        self.versions: dict[str, int] = {}
        self.content: dict[str, object] = {}

    def get(self, conn, force: bool = False) -> "ConfigCache":
        now = self._monotonic()
        if not force and now - self._checked < self.refresh_s and self.content:
            return self
        with self._lock:
            for name, version in registry_store.section_versions(conn):
                if self.versions.get(name) != version:
                    self.content[name] = registry_store.section_content(conn, name)
                    self.versions[name] = version
            self._checked = now
        return self

    @property
    def catalogue(self) -> dict:
        return self.content[configsync.CATALOGUE]

    @property
    def params(self) -> dict:
        return self.content[configsync.PARAMS]


# ---------------------------------------------------------------- reading

def shop_info(conn, shop: str | None) -> dict:
    """{"id", "town", "designated"} of a shop from the supervision grid's `shops`
    table (gateway/supervision/grid.py owns it); a shop not on record is not designated."""
    info = {"id": shop or "", "designated": False}
    if not shop:
        return info
    row = registry_store.shop_place(conn, shop)
    if row:
        if row[0]:
            info["town"] = str(row[0])
        info["designated"] = bool(row[2])
    return info


def current_periods(params: dict, date: str) -> dict[str, str]:
    return {cid: policy.period_of(params, cid, date) for cid in sorted(params["categories"])}


def used_of(conn, subject: str, periods: dict[str, str] | None = None) -> dict:
    """{category: {period: used}}, all periods or only the given current ones."""
    out: dict[str, dict[str, int]] = {}
    for category, period, used in quota_store.used_rows(conn, subject):
        if periods is not None and periods.get(category) != period:
            continue
        out.setdefault(category, {})[period] = used
    return out


def report(conn, subject: str, cache: ConfigCache, date: str) -> dict:
    """Allowance, used and remaining per category on a date (`gateway balance`)."""
    entry = registry_store.subject_entry(conn, subject)
    if entry is None:
        raise KeyError(subject)
    return policy.balance(entry, used_of(conn, subject), cache.get(conn).params, date)


# ---------------------------------------------------------------- computing moves

def with_periods(consumption: dict, periods: dict, params: dict, date: str) -> list:
    """{category: amount} -> [[category, period, amount]]: periods from the
    decision when known, else from the sale's date."""
    out = []
    for category in sorted(consumption):
        period = periods.get(category)
        if period is None:
            if category in params["categories"]:
                period = policy.period_of(params, category, date)
            else:
                period = date[:4]
        out.append([category, period, consumption[category]])
    return out


def _negate(moves) -> list:
    return [[c, p, -a] for c, p, a in moves]


def _difference(new, old) -> list:
    totals: dict[tuple[str, str], int] = {}
    for c, p, a in new:
        totals[(c, p)] = totals.get((c, p), 0) + a
    for c, p, a in old:
        totals[(c, p)] = totals.get((c, p), 0) - a
    return [[c, p, a] for (c, p), a in sorted(totals.items()) if a]


# ---------------------------------------------------------------- authorization

def authorize(conn, cache: ConfigCache, terminal: str, request: dict, now: int) -> dict:
    """Decide one verified request and commit its consumption; returns the
    response fields (status, auth, decision, code, replayed, used, rev, acked,
    subject). Runs inside the caller's transaction.

    Idempotent per (terminal, sale_id): a repeated or late request gets the
    first answer again and consumes nothing; a request whose sale was already
    recorded (the terminal gave up waiting and sold offline) consumes nothing.
    """
    sale_id = request["sale_id"]
    subject = request["subject"]
    lock(conn, "quota:" + subject)  # read-decide-write is one step per subject on every backend
    config = cache.get(conn)
    params = config.params
    date = authz.local_date(now)
    periods = current_periods(params, date)
    row = quota_store.authorization_for_sale(conn, terminal, sale_id)
    if row is not None:
        fields = {"status": authz.OK, "replayed": True}
        if row.decision is None:
            fields = {"status": authz.ERROR, "code": "auth_superseded", "replayed": True}
        else:
            fields["decision"] = row.decision
            if fields["decision"]["decision"] != "refuse":
                fields["auth"] = auth_wire_id(row.id)
        return _with_balances(conn, fields, terminal, row.subject or subject, periods)
    if quota_store.sale_recorded(conn, terminal, sale_id):
        quota_store.supersede(conn, terminal, sale_id, request["id"], subject, now)
        return _with_balances(conn, {"status": authz.ERROR, "code": "auth_superseded"}, terminal, subject, periods)
    entry = registry_store.subject_entry(conn, subject)
    if entry is None:
        decision = authz.refusal("online", date, request["cart"], "subject_unknown")
    else:
        inputs = {
            "date": date, "mode": "online", "identity": request["identity"], "subject": entry,
            "shop": shop_info(conn, fleet.terminal_shop(conn, terminal)), "cart": request["cart"],
            "balances": used_of(conn, subject, periods), "catalogue": config.catalogue, "params": params,
        }
        decision = authz.wire_decision(policy.decide(inputs))
    approved = decision["decision"] != "refuse"
    moves = with_periods(decision["consumption"], decision.get("periods", {}), params, date) if approved else []
    rowid = quota_store.add_authorization(conn, terminal, sale_id, request["id"], subject, now,
                                          "held" if approved else "refused", moves, decision)
    quota_store.move(conn, now, subject, moves, "auth", terminal, None, rowid)
    fields = {"status": authz.OK, "decision": decision}
    if approved:
        fields["auth"] = auth_wire_id(rowid)
    if entry is not None:
        fields["subject"] = terminal_entries(conn, [entry])[0]
    return _with_balances(conn, fields, terminal, subject, periods)


def public_entry(entry: dict, village_name: str | None = None, grade: str | None = None) -> dict:
    """The registry fields a terminal needs to decide offline, nothing more:
    ID numbers and contact details stay at the gateway. `village_name` and
    `grade` are what the clerk's subject panel shows (`terminal_entries`)."""
    out = {"id": entry["id"], "status": entry.get("status", "active")}
    for name in ("town", "village", "name", "plots", "permits", "allowances"):
        if entry.get(name) not in (None, "", [], {}):
            out[name] = entry[name]
    if village_name and out.get("village"):
        out["village_name"] = village_name
    if grade in configsync.GRADES:
        out["grade"] = grade
    return out


def terminal_entries(conn, entries: list[dict]) -> list[dict]:
    """Registry entries as terminals get them (the `subjects` section, the
    subject of an authorization response): `public_entry` plus the name of the
    subject's village from the supervision grid and its current credit grade
    (gateway/supervision/cases.py keeps `credit_grades`: a subject without a row is A).
    Without a grid imported the village's name is left out."""
    names = registry_store.village_names(
        conn, sorted({e["village"] for e in entries if isinstance(e.get("village"), str)}))
    grades = registry_store.credit_grades(conn, [e["id"] for e in entries])
    return [public_entry(e, names.get(e.get("village")), grades.get(e["id"], "A")) for e in entries]


def _with_balances(conn, fields: dict, terminal: str, subject: str, periods: dict) -> dict:
    fields["used"] = used_of(conn, subject, periods)
    fields["rev"] = quota_store.rev(conn)
    fields["acked"] = fleet.acked_upto(conn, terminal)
    return fields


def release_stale(conn, now: int, ttl_ms: int = HOLD_TTL_MS) -> int:
    """Give back authorizations whose sale record never arrived (the terminal
    failed to record after approval). A record arriving later is applied as a
    new sale, so nothing is lost either way. Inside the caller's transaction."""
    released = 0
    for rowid, subject, consumption, terminal in quota_store.stale_holds(conn, now - ttl_ms):
        quota_store.move(conn, now, subject, _negate(consumption), "release", terminal, None, rowid)
        quota_store.settle(conn, rowid, "released")
        released += 1
    if released:
        log.warning("released stale authorizations count=%d", released)
    return released


# ---------------------------------------------------------------- records (ingest hook)

class RecordApplier:
    """Follower hook (`Ingest.follow`): apply sale, void and refusal records to
    the balances, after ingest has committed them.

    It must never raise: an exception would roll back the follower's batch and
    it would retry the same records forever. Its work runs in a SAVEPOINT; on an
    error that is rolled back, logged, and a `quota_apply_failed` violation names
    the record, while the record itself is stored and acknowledged as usual.
    """

    TYPES = ("sale", "void", "refusal")

    def __init__(self, cache: ConfigCache):
        self.cache = cache
        self._shops: dict[str, str | None] = {}

    def __call__(self, conn, terminal: str, entry, now: int) -> None:
        if entry.type not in self.TYPES:
            return
        try:
            record = json.loads(entry.text)
            subject = record["body"].get("subject")
            if isinstance(subject, str):
                lock(conn, "quota:" + subject)  # no authorization decides on half-applied balances
            with savepoint(conn, "quota_apply"):
                if entry.type == "sale":
                    self._sale(conn, terminal, record, now)
                elif entry.type == "void":
                    self._void(conn, terminal, record, now)
                else:
                    self._refusal(conn, terminal, record, now)
        except Exception as err:  # noqa: BLE001 - see the class docstring
            log.exception("quota apply failed terminal=%s seq=%s", terminal, entry.seq)
            violations.report(conn, now, "quota_apply_failed", "quota_apply_failed:%s:%s" % (terminal, entry.seq),
                              terminal=terminal, seq=entry.seq, detail={"error": str(err)[:300]})

    def _shop(self, conn, terminal: str) -> str | None:
        if terminal not in self._shops:
            self._shops[terminal] = fleet.terminal_shop(conn, terminal)
        return self._shops[terminal]

    def _authorization(self, conn, terminal: str, body: dict):
        rowid = auth_rowid(body.get("auth"))
        if rowid is not None:
            row = quota_store.authorization_by_id(conn, rowid, terminal)
            if row:
                return row
        if body.get("sale_id"):
            return quota_store.authorization_for_sale(conn, terminal, body["sale_id"])
        return None

    def _sale(self, conn, terminal: str, record: dict, now: int) -> None:
        body = record["body"]
        if "consumption" not in body and "auth" not in body:
            return  # a record from before quota enforcement (or a synthetic load): nothing to count
        seq, subject = record["seq"], body["subject"]
        params = self.cache.get(conn).params
        date = authz.local_date(record["time"])
        shop = self._shop(conn, terminal)
        auth = self._authorization(conn, terminal, body)
        placeholder = quota_store.sale(conn, terminal, seq)
        counted = with_periods(body.get("consumption") or {}, {}, params, date)
        applied = counted
        if auth is not None:
            held = auth.consumption
            if auth.state == "held":
                # Authorization = consumption: count only what the sale differs by.
                counted = with_periods(body.get("consumption") or {}, {c: p for c, p, _ in held}, params, date)
                applied = counted
                if placeholder is not None:
                    quota_store.move(conn, now, subject, _negate(held), "release", terminal, seq, auth.id)
                    applied = []
                else:
                    quota_store.move(conn, now, subject, _difference(counted, held), "match", terminal, seq, auth.id)
                quota_store.settle(conn, auth.id, "matched", seq)
                auth = auth.id
            else:
                if auth.state == "matched":
                    violations.report(conn, now, "auth_reused", "auth_reused:%s:%d" % (terminal, auth.id),
                                      subject=subject, shop=shop, terminal=terminal, seq=seq,
                                      detail={"auth": auth_wire_id(auth.id)})
                auth = auth.id
                if placeholder is None:
                    quota_store.move(conn, now, subject, counted, "sale", terminal, seq, auth)
                else:
                    applied = []
        elif placeholder is None:
            quota_store.move(conn, now, subject, counted, "sale", terminal, seq)
        else:
            applied = []
        if placeholder is None:
            quota_store.add_sale(conn, terminal, seq, body.get("sale_id"), subject, shop, body.get("mode"),
                                 record["time"], auth, applied)
        else:
            quota_store.fill_placeholder(conn, terminal, seq, body.get("sale_id"), shop, body.get("mode"),
                                         record["time"], auth)
        if applied:
            self._check_overdraw(conn, now, subject, applied, terminal, seq, shop, params)

    def _void(self, conn, terminal: str, record: dict, now: int) -> None:
        body, seq = record["body"], record["seq"]
        target = body["voids"]
        sale = quota_store.sale(conn, terminal, target)
        if sale is None:
            # The void overtook its sale (a re-sent batch): remember it, so the
            # sale counts nothing when it arrives.
            subject = body.get("subject")
            quota_store.add_placeholder(conn, terminal, target, subject, seq)
            auth = self._authorization(conn, terminal, {"auth": body.get("auth")}) if body.get("auth") else None
            if auth is not None and auth.state == "held" and subject:
                quota_store.move(conn, now, subject, _negate(auth.consumption), "void", terminal, seq, auth.id)
                quota_store.settle(conn, auth.id, "released")
            return
        if sale.voided_by is not None:
            return  # voided already: a second void gives nothing back
        quota_store.move(conn, now, sale.subject, _negate(sale.applied), "void", terminal, seq, sale.auth)
        quota_store.mark_voided(conn, terminal, target, seq)

    def _refusal(self, conn, terminal: str, record: dict, now: int) -> None:
        body = record["body"]
        if not body.get("sale_id"):
            return
        auth = quota_store.authorization_for_sale(conn, terminal, body["sale_id"])
        if auth is None:
            # The sale is closed: its request, should it still arrive, must not consume.
            quota_store.supersede(conn, terminal, body["sale_id"], "-", body.get("subject"), now, record["seq"])
        elif auth.state == "held":
            # The terminal gave up waiting and refused offline; the late approval is void.
            quota_store.move(conn, now, auth.subject, _negate(auth.consumption), "release", terminal, record["seq"],
                             auth.id)
            quota_store.settle(conn, auth.id, "released", record["seq"])

    def _check_overdraw(self, conn, now, subject, applied, terminal, seq, shop, params) -> None:
        entry = registry_store.subject_entry(conn, subject)
        if entry is None:
            return
        categories = params["categories"]
        over: dict[str, dict] = {}
        for category, period, amount in applied:
            if amount <= 0 or category not in categories or not categories[category].get("enforce", True):
                continue
            used = quota_store.used_in(conn, subject, category, period)
            granted = policy.allowance(entry, params, category, period)
            if used > granted:
                over.setdefault(period, {})[category] = {"allowance": granted, "used": used, "over": used - granted}
        for period, cats in sorted(over.items()):
            shops, sales = self._contributors(conn, subject, period)
            new = violations.report(
                conn, now, "over_quota", "over_quota:%s:%s" % (subject, period), subject=subject, shop=shop,
                terminal=terminal, seq=seq,
                detail={"period": period, "categories": cats, "shops": shops, "sales": sales})
            if new:
                log.warning("over quota subject=%s period=%s shops=%s", subject, period, ",".join(shops))

    @staticmethod
    def _contributors(conn, subject: str, period: str) -> tuple[list[str], list[list]]:
        """Shops (and their sales) whose offline sales count in the period."""
        shops: list[str] = []
        sales: list[list] = []
        for terminal, seq, shop, mode, applied in quota_store.live_sales(conn, subject):
            if mode != "offline" or not any(p == period for _, p, _ in applied):
                continue
            sales.append([terminal, seq])
            if shop and shop not in shops:
                shops.append(shop)
        return shops, sales
