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

Balances live in `quota_used` (subject, category, period) -> used, changed only by
`_move`, which also appends the audit row to `quota_moves`. On SQLite the
surrounding BEGIN IMMEDIATE (`gateway.store.transaction`) makes
read-decide-write one serial step. On
PostgreSQL each move is one atomic statement,
`INSERT ... ON CONFLICT (subject, category, period) DO UPDATE SET used =
quota_used.used + excluded.used`, and an authorization guards its decision with
a per-subject revision (`UPDATE quota_heads SET rev = rev + 1 WHERE subject = $1
AND rev = $2`, retry on 0 rows) so any worker can serve any terminal.

A balance pushed below zero (offline sales in several shops that each saw
enough left) raises one `over_quota` violation per subject and period, naming
the shops whose offline sales made it.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from gateway.store import registry as registry_store
from gateway.store import violations
from gateway.store import lock, savepoint
from gateway.store.dialect import json_values
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
            rows = conn.execute("SELECT name, version FROM config_sections").fetchall()
            for name, version in rows:
                if self.versions.get(name) != version:
                    text = conn.execute("SELECT content FROM config_sections WHERE name = ?", [name]).fetchone()[0]
                    self.content[name] = json.loads(text)
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
    for category, period, used in conn.execute(
            "SELECT category, period, used FROM quota_used WHERE subject = ?", [subject]):
        if periods is not None and periods.get(category) != period:
            continue
        out.setdefault(category, {})[period] = used
    return out


def rev(conn) -> int:
    return conn.execute("SELECT value FROM quota_meta WHERE key = 'rev'").fetchone()[0]


def report(conn, subject: str, cache: ConfigCache, date: str) -> dict:
    """Allowance, used and remaining per category on a date (`gateway balance`)."""
    entry = registry_store.subject_entry(conn, subject)
    if entry is None:
        raise KeyError(subject)
    return policy.balance(entry, used_of(conn, subject), cache.get(conn).params, date)


# ---------------------------------------------------------------- moving balances

def _bump_rev(conn) -> int:
    return conn.execute("UPDATE quota_meta SET value = value + 1 WHERE key = 'rev' RETURNING value").fetchone()[0]


def _move(conn, now: int, subject: str, moves, kind: str, terminal=None, seq=None, auth=None) -> list:
    """Apply [[category, period, delta], ...]: the one place balances change."""
    moves = [m for m in moves if m[2]]
    if not moves:
        return moves
    revision = _bump_rev(conn)
    for category, period, delta in moves:
        conn.execute(
            "INSERT INTO quota_used(subject, category, period, used, rev) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(subject, category, period) DO UPDATE SET used = quota_used.used + excluded.used, "
            "rev = excluded.rev",
            [subject, category, period, delta, revision])
        conn.execute("INSERT INTO quota_moves(time, subject, category, period, delta, kind, terminal, seq, auth) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     [now, subject, category, period, delta, kind, terminal, seq, auth])
    return moves


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
    row = conn.execute("SELECT id, decision, subject FROM authorizations WHERE terminal = ? AND sale_id = ?",
                       [terminal, sale_id]).fetchone()
    if row is not None:
        fields = {"status": authz.OK, "replayed": True}
        if row[1] is None:
            fields = {"status": authz.ERROR, "code": "auth_superseded", "replayed": True}
        else:
            fields["decision"] = json.loads(row[1])
            if fields["decision"]["decision"] != "refuse":
                fields["auth"] = auth_wire_id(row[0])
        return _with_balances(conn, fields, terminal, row[2] or subject, periods)
    if conn.execute("SELECT 1 FROM quota_sales WHERE terminal = ? AND sale_id = ?",
                    [terminal, sale_id]).fetchone():
        conn.execute("INSERT INTO authorizations(terminal, sale_id, request, subject, time, state, consumption) "
                     "VALUES (?, ?, ?, ?, ?, 'superseded', '[]')", [terminal, sale_id, request["id"], subject, now])
        return _with_balances(conn, {"status": authz.ERROR, "code": "auth_superseded"}, terminal, subject, periods)
    entry = registry_store.subject_entry(conn, subject)
    if entry is None:
        decision = authz.refusal("online", date, request["cart"], "subject_unknown")
    else:
        inputs = {
            "date": date, "mode": "online", "identity": request["identity"], "subject": entry,
            "shop": shop_info(conn, registry_store.terminal_shop(conn, terminal)), "cart": request["cart"],
            "balances": used_of(conn, subject, periods), "catalogue": config.catalogue, "params": params,
        }
        decision = authz.wire_decision(policy.decide(inputs))
    approved = decision["decision"] != "refuse"
    moves = with_periods(decision["consumption"], decision.get("periods", {}), params, date) if approved else []
    rowid = conn.execute(
        "INSERT INTO authorizations(terminal, sale_id, request, subject, time, state, consumption, decision) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        [terminal, sale_id, request["id"], subject, now, "held" if approved else "refused",
         json.dumps(moves), json.dumps(decision, ensure_ascii=False)]).fetchone()[0]
    _move(conn, now, subject, moves, "auth", terminal, None, rowid)
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
    ids = json.dumps([e["id"] for e in entries])
    villages = json.dumps(sorted({e["village"] for e in entries if isinstance(e.get("village"), str)}))
    names = dict(conn.execute("SELECT code, name FROM areas WHERE level = 'village' "
                              f"AND code IN ({json_values(conn)})", [villages]))
    grades = dict(conn.execute("SELECT subject, grade FROM credit_grades "
                               f"WHERE subject IN ({json_values(conn)})", [ids]))
    return [public_entry(e, names.get(e.get("village")), grades.get(e["id"], "A")) for e in entries]


def bump_subjects_rev(conn) -> int:
    """A new version of every terminal's `subjects` section, for what the
    section carries from the grid and the cases (a village's name, a credit
    grade): gateway/supervision/grid.py and cases.py call it here, the
    registry's import calls `gateway.store.registry.bump_subjects_rev` itself."""
    return registry_store.bump_subjects_rev(conn)


def _with_balances(conn, fields: dict, terminal: str, subject: str, periods: dict) -> dict:
    fields["used"] = used_of(conn, subject, periods)
    fields["rev"] = rev(conn)
    row = conn.execute("SELECT acked_upto FROM terminals WHERE id = ?", [terminal]).fetchone()
    fields["acked"] = row[0] if row else 0
    return fields


def release_stale(conn, now: int, ttl_ms: int = HOLD_TTL_MS) -> int:
    """Give back authorizations whose sale record never arrived (the terminal
    failed to record after approval). A record arriving later is applied as a
    new sale, so nothing is lost either way. Inside the caller's transaction."""
    released = 0
    for rowid, subject, consumption, terminal in conn.execute(
            "SELECT id, subject, consumption, terminal FROM authorizations WHERE state = 'held' AND time < ?",
            [now - ttl_ms]).fetchall():
        _move(conn, now, subject, _negate(json.loads(consumption)), "release", terminal, None, rowid)
        conn.execute("UPDATE authorizations SET state = 'released' WHERE id = ?", [rowid])
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
            self._shops[terminal] = registry_store.terminal_shop(conn, terminal)
        return self._shops[terminal]

    def _authorization(self, conn, terminal: str, body: dict):
        rowid = auth_rowid(body.get("auth"))
        if rowid is not None:
            row = conn.execute("SELECT id, state, consumption FROM authorizations WHERE id = ? AND terminal = ?",
                               [rowid, terminal]).fetchone()
            if row:
                return row
        if body.get("sale_id"):
            return conn.execute("SELECT id, state, consumption FROM authorizations WHERE terminal = ? AND sale_id = ?",
                                [terminal, body["sale_id"]]).fetchone()
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
        placeholder = conn.execute("SELECT voided_by FROM quota_sales WHERE terminal = ? AND seq = ?",
                                   [terminal, seq]).fetchone()
        counted = with_periods(body.get("consumption") or {}, {}, params, date)
        applied = counted
        if auth is not None:
            held = json.loads(auth[2])
            if auth[1] == "held":
                # Authorization = consumption: count only what the sale differs by.
                counted = with_periods(body.get("consumption") or {}, {c: p for c, p, _ in held}, params, date)
                applied = counted
                if placeholder is not None:
                    _move(conn, now, subject, _negate(held), "release", terminal, seq, auth[0])
                    applied = []
                else:
                    _move(conn, now, subject, _difference(counted, held), "match", terminal, seq, auth[0])
                conn.execute("UPDATE authorizations SET state = 'matched', seq = ? WHERE id = ?", [seq, auth[0]])
                auth = auth[0]
            else:
                if auth[1] == "matched":
                    violations.report(conn, now, "auth_reused", "auth_reused:%s:%d" % (terminal, auth[0]),
                                      subject=subject, shop=shop, terminal=terminal, seq=seq,
                                      detail={"auth": auth_wire_id(auth[0])})
                auth = auth[0]
                if placeholder is None:
                    _move(conn, now, subject, counted, "sale", terminal, seq, auth)
                else:
                    applied = []
        elif placeholder is None:
            _move(conn, now, subject, counted, "sale", terminal, seq)
        else:
            applied = []
        if placeholder is None:
            conn.execute("INSERT INTO quota_sales(terminal, seq, sale_id, subject, shop, mode, time, auth, applied) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [terminal, seq, body.get("sale_id"), subject, shop, body.get("mode"), record["time"], auth,
                          json.dumps(applied)])
        else:
            conn.execute("UPDATE quota_sales SET sale_id = ?, shop = ?, mode = ?, time = ?, auth = ?, applied = '[]' "
                         "WHERE terminal = ? AND seq = ?",
                         [body.get("sale_id"), shop, body.get("mode"), record["time"], auth, terminal, seq])
        if applied:
            self._check_overdraw(conn, now, subject, applied, terminal, seq, shop, params)

    def _void(self, conn, terminal: str, record: dict, now: int) -> None:
        body, seq = record["body"], record["seq"]
        target = body["voids"]
        row = conn.execute("SELECT subject, applied, voided_by, auth FROM quota_sales WHERE terminal = ? AND seq = ?",
                           [terminal, target]).fetchone()
        if row is None:
            # The void overtook its sale (a re-sent batch): remember it, so the
            # sale counts nothing when it arrives.
            subject = body.get("subject")
            conn.execute("INSERT INTO quota_sales(terminal, seq, subject, applied, voided_by) VALUES (?, ?, ?, '[]', ?)",
                         [terminal, target, subject, seq])
            auth = self._authorization(conn, terminal, {"auth": body.get("auth")}) if body.get("auth") else None
            if auth is not None and auth[1] == "held" and subject:
                _move(conn, now, subject, _negate(json.loads(auth[2])), "void", terminal, seq, auth[0])
                conn.execute("UPDATE authorizations SET state = 'released' WHERE id = ?", [auth[0]])
            return
        subject, applied, voided_by, auth = row
        if voided_by is not None:
            return  # voided already: a second void gives nothing back
        _move(conn, now, subject, _negate(json.loads(applied)), "void", terminal, seq, auth)
        conn.execute("UPDATE quota_sales SET voided_by = ? WHERE terminal = ? AND seq = ?", [seq, terminal, target])

    def _refusal(self, conn, terminal: str, record: dict, now: int) -> None:
        body = record["body"]
        if not body.get("sale_id"):
            return
        auth = conn.execute("SELECT id, state, consumption, subject FROM authorizations "
                            "WHERE terminal = ? AND sale_id = ?", [terminal, body["sale_id"]]).fetchone()
        if auth is None:
            # The sale is closed: its request, should it still arrive, must not consume.
            conn.execute("INSERT INTO authorizations(terminal, sale_id, request, subject, time, state, consumption, seq) "
                         "VALUES (?, ?, '-', ?, ?, 'superseded', '[]', ?)",
                         [terminal, body["sale_id"], body.get("subject"), now, record["seq"]])
        elif auth[1] == "held":
            # The terminal gave up waiting and refused offline; the late approval is void.
            _move(conn, now, auth[3], _negate(json.loads(auth[2])), "release", terminal, record["seq"], auth[0])
            conn.execute("UPDATE authorizations SET state = 'released', seq = ? WHERE id = ?", [record["seq"], auth[0]])

    def _check_overdraw(self, conn, now, subject, applied, terminal, seq, shop, params) -> None:
        entry = registry_store.subject_entry(conn, subject)
        if entry is None:
            return
        categories = params["categories"]
        over: dict[str, dict] = {}
        for category, period, amount in applied:
            if amount <= 0 or category not in categories or not categories[category].get("enforce", True):
                continue
            row = conn.execute("SELECT used FROM quota_used WHERE subject = ? AND category = ? AND period = ?",
                               [subject, category, period]).fetchone()
            used = row[0] if row else 0
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
        for terminal, seq, shop, mode, applied in conn.execute(
                "SELECT terminal, seq, shop, mode, applied FROM quota_sales WHERE subject = ? AND voided_by IS NULL "
                "ORDER BY time", [subject]):
            if mode != "offline" or not any(p == period for _, p, _ in json.loads(applied)):
                continue
            sales.append([terminal, seq])
            if shop and shop not in shops:
                shops.append(shop)
        return shops, sales
