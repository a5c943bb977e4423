"""The thin shell around the rules: gathers each rule's inputs from the
store's repositories, runs the rule, reports what it finds.

`RecordHook` follows the stored records (`Ingest.follow`, gateway/ingest/follow.py):
it runs after ingest's commit, in a transaction that also moves its cursor, so
the sales index row and the violations a record causes are written exactly
once however often the record is delivered, without slowing ingest down. A failing
rule must never stop ingest (a rolled-back batch is re-sent forever), so each
record's supervision work runs in a SAVEPOINT that is rolled back and logged on
error while the record itself still commits.

An offline sale's identity proof is checked here too, by the same function
that checks an online request (`gateway.enforcement.authz.check_identity`), against the
registry keys and revocations the gateway holds when the record arrives, on
the sale's own date; `gateway.supervision.rules.proof` picks the records and turns a
failure into a violation. The record is stored either way.

`Sweeper` runs the time-window rules (silent terminals, backlog, top buyers)
and turns ingest's integrity alerts into violations, from a clock passed in.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Callable

from gateway.enforcement import authz as gateway_authz
from gateway.enforcement import registry, subjects_view
from gateway.store import fleet, grid, records, registry as registry_store, sales, violations, watermarks
from gateway.supervision.rules import Event, Finding, hours, identity, integrity, make_event, products, proof, split, terminals
from gateway.supervision.rules import top_buyers as top_buyers_rule
from gateway.supervision.rules import travel
from gateway.store import savepoint, transaction
from gateway.store.tx import lock
from protocols import authz, policy
from protocols import catalogue as _catalogue

log = logging.getLogger(__name__)

INDEXED_TYPES = ("sale", "refusal", "void")


def load_params() -> dict:
    import os

    path = os.path.join(os.path.dirname(_catalogue.default_path()), "policy_params.json")
    with open(path) as f:
        return json.load(f)


def current_config(conn) -> tuple[dict | None, dict | None]:
    """The catalogue and policy params the terminals are running, from the quota
    ledger's `config_sections` (issue 5) when it exists; (None, None) falls back
    to the shipped samples. Read defensively: supervision must not break because
    another part's table changed shape."""
    out: dict[str, dict] = {}
    try:
        for name, content in fleet.section_texts(conn, ("catalogue", "params")).items():
            value = json.loads(content)
            if isinstance(value, dict):
                out[name] = value
    except ValueError as err:
        log.warning("could not read config_sections: %s", err)
    return out.get("catalogue"), out.get("params")


def amounts_by_kind(cat: dict, items: list) -> dict[str, int]:
    """Base units (g or mL) per product kind; the item's own `amount` when the
    terminal recorded it, else packs x the pack's net content."""
    out: dict[str, int] = {}
    for item in items:
        prod = cat.get("products", {}).get(item.get("product"))
        if not prod:
            continue
        amount = item.get("amount")
        if not isinstance(amount, int):
            packs_ = prod.get("packs") or {}
            pack = packs_.get(item.get("spec")) or (packs_[sorted(packs_)[0]] if packs_ else None)
            amount = (pack or {}).get("net", 0) * int(item.get("packs") or 0)
        kind = prod.get("kind")
        out[kind] = out.get(kind, 0) + amount
    return out


def report_all(conn, now: int, findings: list[Finding]) -> int:
    new = 0
    for f in findings:
        if violations.report(conn, now, f.code, f.dedup, subject=f.subject, shop=f.shop, terminal=f.terminal,
                             seq=f.seq, detail=f.detail):
            new += 1
            log.info("violation code=%s terminal=%s seq=%s subject=%s", f.code, f.terminal, f.seq, f.subject)
    return new


class RecordHook:
    """`ingest.follow("supervision", RecordHook(cfg))`."""

    def __init__(self, cfg: dict, catalogue: dict | None = None, params: dict | None = None):
        self.cfg = cfg
        self.tz = cfg["grid"]["tz_minutes"]
        self.catalogue = catalogue or _catalogue.load()
        self.params = params or load_params()
        self.required_identity = self.params.get("restricted_identity", "card+face")
        self._shop_of: dict[str, str | None] = {}
        self._shops: dict[str, grid.Shop | None] = {}
        self._last_time: dict[str, tuple[int, int]] = {}  # terminal -> (seq, time) of its last record
        self.identity = gateway_authz.IdentityContext()   # registry keys and revocations, for proofs
        self.errors = 0

    def forget(self) -> None:
        """Drop cached terminal->shop and shop rows (after a grid import or
        provisioning; the sweep calls it every tick)."""
        self._shop_of = {}
        self._shops = {}

    def shop_of(self, conn, terminal: str) -> str | None:
        if terminal not in self._shop_of:
            self._shop_of[terminal] = fleet.terminal_shop(conn, terminal)
        return self._shop_of[terminal]

    def __call__(self, conn, terminal: str, entry, now: int) -> None:
        try:
            with savepoint(conn, "supervision"):
                self.apply(conn, terminal, entry.seq, entry.type, entry.time, entry.text, now)
        except Exception:
            self.errors += 1
            log.exception("supervision rules failed terminal=%s seq=%s; record stored without them", terminal, entry.seq)

    def apply(self, conn, terminal: str, seq: int, rtype: str, time_ms: int, text: str, now: int) -> list[Finding]:
        body = json.loads(text)["body"]
        shop_id = self.shop_of(conn, terminal)
        if shop_id not in self._shops:
            self._shops[shop_id] = grid.shop(conn, shop_id)
        shop = self._shops[shop_id]
        event = make_event(terminal, seq, rtype, time_ms, now, body, shop_id, self.tz)
        group = None
        if rtype in INDEXED_TYPES:
            group = subjects_view.group_of(conn, event.subject)
            self._index(conn, event, shop, group)
        elif rtype == "heartbeat" and isinstance(body.get("backlog"), int):
            fleet.sample_backlog(conn, terminal, now, body["backlog"])
        findings = self.check(conn, event, shop, group)
        report_all(conn, now, findings)
        return findings

    def _index(self, conn, event: Event, shop: grid.Shop | None, group: str | None = None) -> None:
        b = event.body
        kinds = amounts_by_kind(self.catalogue, event.items) if event.type == "sale" else {}
        sales.index(conn, terminal=event.terminal, seq=event.seq, type=event.type, time=event.time,
                    received=event.received, day=event.local_date, shop=event.shop,
                    village=shop.village if shop else None, town=shop.town if shop else None,
                    district=shop.district if shop else None, subject=b.get("subject"), card=b.get("card"),
                    identity=b.get("identity"), mode=b.get("mode"), pesticide=kinds.get("pesticide", 0),
                    fertilizer=kinds.get("fertilizer", 0), consumption=b.get("consumption"), subject_group=group)

    def check(self, conn, event: Event, shop: grid.Shop | None, group: str | None = None) -> list[Finding]:
        cfg = self.cfg
        out: list[Finding] = []
        cached = self._last_time.get(event.terminal)
        if cached and cached[0] == event.seq - 1:
            prev = cached[1]
        else:
            prev = records.record_time(conn, event.terminal, event.seq - 1)
        self._last_time[event.terminal] = (event.seq, event.time)
        out += terminals.clock_skew(event, prev, cfg)
        if event.type != "sale":
            return out
        states = products.item_states(self.catalogue, event)
        out += products.banned_product(event, states)
        out += products.restricted_not_designated(event, states, shop)
        if any(s and s["status"] == _catalogue.RESTRICTED for _, _, s in states):
            known = registry_store.registry_known(conn)
            out += products.restricted_no_permit(event, states, subjects_view.lookup(conn, event.subject), known)
        out += products.face_missing(event, states, self.required_identity)
        if event.identity == "override" and event.shop:
            since = event.time - cfg["override"]["window_hours"] * 3_600_000
            n, o = sales.override_counts(conn, event.shop, since, event.time)
            out += identity.override_rate(event, n, o, cfg)
        claim = proof.claim(event, cfg)
        if claim is not None:
            out += proof.identity_unproven_offline(event, *self.prove(conn, event, claim))
        if event.card and shop is not None:
            row = sales.last_card_sale_elsewhere(conn, event.card, event.shop, event.time)
            other = grid.shop(conn, row[0]) if row else None
            out += travel.card_travel(event, shop, (other, row[1], row[2], row[3]) if other else None, cfg)
        if event.subject:
            since = event.time - cfg["split"]["window_minutes"] * 60_000
            window = [{"shop": s, "time": t, "amounts": {"pesticide": p, "fertilizer": f}} for s, t, p, f in
                      sales.subject_window(conn, event.subject, since, event.time)]
            out += split.split_purchase(event, window, cfg)
        if event.subject and group:
            since = event.time - cfg["split_group"]["window_minutes"] * 60_000
            window = [{"subject": u, "shop": s, "time": t, "amounts": {"pesticide": p, "fertilizer": f}}
                      for u, s, t, p, f in sales.group_window(conn, group, since, event.time)]
            out += split.split_purchase_group(event, group, window, cfg)
        out += hours.outside_hours(event, shop, cfg)
        return out

    def prove(self, conn, event: Event, claim: dict) -> tuple[str | None, str]:
        """(reason code, detail) of a sale's identity claim that does not hold,
        (None, "") when it does: `gateway.enforcement.authz.check_identity`, as online, but
        on the sale's date (a card valid when it was shown offline stays valid
        for that sale) against the revocations known now. A gateway without a
        registry imported (supervision alone) cannot judge a face match:
        nothing is raised for it, and the other rules still run."""
        try:
            face = "face" in authz.NEEDS[claim["identity"]]
            area = registry.terminal_area(conn, event.terminal) if face else {}
            gateway_authz.check_identity(conn, claim, authz.local_date(event.time), self.identity.refresh(conn), area,
                                         judge_face=face and registry_store.registry_known(conn))
        except authz.Invalid as err:
            return err.code, err.detail or ""
        return None, ""


class Sweeper:
    """Time-window rules and alert conversion; `tick()` from a timer thread or a test."""

    def __init__(self, conn, cfg: dict, clock: Callable[[], int],
                 params: dict | None = None, lock=None, top_buyers_real_s: float = 0.0,
                 monotonic: Callable[[], float] = time.monotonic):
        """The monthly ranking is redone every clock hour, and never sooner
        than `top_buyers_real_s` real seconds after the last one: on a clock a
        simulator runs a thousand times faster, an hour is a second, and the
        ranking reads the whole month's sales."""
        self.conn = conn
        self.cfg = cfg
        self.clock = clock
        self.params = params or load_params()
        self.lock = lock
        self.last_top_buyers = 0
        self.top_buyers_real_s = top_buyers_real_s
        self._monotonic = monotonic
        self._last_top_buyers_real: float | None = None

    def _tx(self, fn) -> int:
        """Every sweep transaction takes the `sweep` lock first and only then
        reads its watermark: when a leader that lost its session and its
        successor overlap for a moment, their sweeps take turns, and the
        second one sees what the first committed (PostgreSQL's READ
        COMMITTED reads afresh at each statement), so no alert is converted,
        no violation filed and no case escalated twice. SQLite's BEGIN
        IMMEDIATE already serialises them."""
        with transaction(self.conn):
            lock(self.conn, "supervision-sweep")
            return fn()

    def tick(self, now: int | None = None) -> int:
        now = self.clock() if now is None else now
        new = self._tx(lambda: self.sweep_alerts(now))
        new += self._tx(lambda: self.sweep_terminals(now))
        real = self._monotonic()
        if now - self.last_top_buyers >= 3_600_000 and (
                self._last_top_buyers_real is None or real - self._last_top_buyers_real >= self.top_buyers_real_s):
            new += self.sweep_top_buyers(now)
            self.last_top_buyers = now
            self._last_top_buyers_real = real
        return new

    def sweep_alerts(self, now: int) -> int:
        records.wait_for_alert_writers(self.conn)
        rows = records.alerts_after(self.conn, watermarks.get(self.conn, "alerts"))
        if not rows:
            return 0
        new = report_all(self.conn, now, integrity.from_alerts(rows, fleet.shops_by_terminal(self.conn)))
        watermarks.move(self.conn, "alerts", rows[-1]["id"])
        return new

    def sweep_terminals(self, now: int) -> int:
        conn = self.conn
        rows = fleet.terminals_health(conn)
        new = report_all(conn, now, terminals.terminal_silent(now, rows, self.cfg))
        for r in rows:
            if r["head"] is not None and r["head"] > r["acked_upto"]:
                fleet.sample_backlog(conn, r["id"], now, r["head"] - r["acked_upto"])
        fleet.prune_samples(conn, now - 24 * 3_600_000)
        samples: dict[str, list] = {}
        for t, when, backlog in fleet.backlog_samples(conn, now - 3_600_000):
            samples.setdefault(t, []).append((when, backlog))
        new += report_all(conn, now, terminals.backlog_growing(samples, {r["id"]: r["shop"] for r in rows}, self.cfg))
        return new

    def month_usage(self, now: int) -> tuple[str, list[dict]]:
        """Per subject and category: this month's consumption from the sales
        index against the subject's allowance from the registry."""
        from gateway.supervision.rules import local_parts

        date, _ = local_parts(now, self.cfg["grid"]["tz_minutes"])
        month = date[:7]
        if not registry_store.registry_known(self.conn):
            return month, []
        used: dict[tuple[str, str], int] = {}
        district_of: dict[str, str] = {}
        shop_of: dict[str, str] = {}
        for subject, district, shop, consumption in sales.consumption_between(self.conn, month + "-01", month + "-31"):
            try:
                per = json.loads(consumption)
            except ValueError:
                continue
            for cat, amount in per.items():
                if isinstance(amount, int):
                    used[(subject, cat)] = used.get((subject, cat), 0) + amount
            district_of.setdefault(subject, district)
            shop_of.setdefault(subject, shop)
        rows = []
        categories = self.params.get("categories", {})
        infos = subjects_view.lookup_many(self.conn, {subject for subject, _ in used})
        for (subject, cat), amount in used.items():
            info = infos.get(subject)
            if info is None or cat not in categories:
                continue
            try:
                granted = policy.allowance(info, self.params, cat, policy.period_of(self.params, cat, date))
            except (KeyError, TypeError, ValueError):
                continue
            rows.append({"subject": subject, "district": district_of.get(subject), "shop": shop_of.get(subject),
                         "category": cat, "used": amount, "allowance": granted})
        return month, rows

    def sweep_top_buyers(self, now: int) -> int:
        """The month is read without the write lock (on a busy day that read
        took the low-priority supervision process over a minute, and ingest,
        authorizations and statuses waited for it); only the findings are
        written in a transaction."""
        month, rows = self.month_usage(now)
        findings = top_buyers_rule.top_buyers(month, rows, self.cfg)
        return self._tx(lambda: report_all(self.conn, now, findings))


def run_sweeper(sweeper: Sweeper, stop, interval: float = 5.0, extra: list[Callable[[], None]] | None = None) -> None:
    """Timer loop for the gateway process; errors are logged, never fatal."""
    while not stop.wait(interval):
        for fn in [sweeper.tick] + list(extra or []):
            try:
                fn()
            except Exception:
                log.exception("supervision sweep failed")
