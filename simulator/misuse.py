"""Injected misuse and faults, each with what the gateway should detect.

A plan is made before anything starts (some terminals need a netem link in
front of them, or a clock of their own, from their first connection), then
played as events on the season's timeline. Every injection is logged with its
expectations: (violation code or codes, subject, terminal), None meaning "any".
`simulator/judge.py` matches them against what the gateway raised.

Misuse goes through the counter where a real shop could do it (buying at two
shops while they are offline, lending a card, splitting a purchase, clerk
overrides, selling at night), and as records written straight into the ledger
where only a tampered or stale terminal could (a banned or restricted product
sold: the counter's own policy refuses those). Faults are done to the real
parts: the broker is killed and restarted, a shop's network is unplugged, a
terminal loses power, its clock drifts, its disk fills up.
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Callable

from firmware.counter import Cart
from protocols import catalogue as _catalogue
from simulator.district import District, Shop, Subject, opening_spans
from simulator.season import Season, local_ms

MISUSE = ("over_quota_offline", "card_sharing", "split_purchase", "split_purchase_group",
          "restricted_not_designated", "restricted_no_permit", "face_missing", "banned_sold",
          "override_rate", "ledger_tampering", "after_hours")
FAULTS = ("broker_restart", "shop_offline", "power_loss", "clock_drift", "disk_full")

DAY = 86_400_000
HOUR = 3_600_000
MINUTE = 60_000
UREA = "6990000000268"          # 尿素 50 kg bag, 23 kg of N
DRIFT_MS = 20 * MINUTE          # a terminal clock that runs ahead (clock_skew: more than 5 minutes)


@dataclass
class Injection:
    kind: str
    at_ms: int
    shop: str | None = None
    terminal: str | None = None
    subject: str | None = None
    expect: list[dict] = field(default_factory=list)   # {"code": [..], "subject", "terminal"}
    note: str = ""
    fault: bool = False
    until_ms: int | None = None


@dataclass
class Plan:
    injections: list[Injection] = field(default_factory=list)
    links: set[str] = field(default_factory=set)        # terminals behind a netem link
    drift: dict[str, int] = field(default_factory=dict)  # terminal -> ms its clock runs ahead
    tampered: dict[str, set[int]] = field(default_factory=dict)  # terminal -> ledger seqs deleted


def expect(code: str | tuple, subject: str | None = None, terminal: str | None = None) -> dict:
    return {"code": [code] if isinstance(code, str) else list(code), "subject": subject, "terminal": terminal}


class Planner:
    """Picks shops, subjects and times for each kind, from the seed alone."""

    def __init__(self, district: District, season: Season, seed: int):
        self.d = district
        self.season = season
        self.rng = random.Random(f"{seed}-misuse")
        self.plan = Plan()
        self.used_shops: set[str] = set(season.closed_shops)   # never the demo's kiosk

    # -- picking

    def day(self, index: int) -> dt.date:
        return self.season.start + dt.timedelta(days=min(index, self.season.days - 1))

    def when(self, day: int, minute: int) -> int:
        return local_ms(self.day(day), minute)

    def subject(self, pred: Callable[[Subject], bool], town: str | None = None) -> Subject:
        pool = [s for s in self.d.subjects if s.id not in self.season.reserved and pred(s)
                and (town is None or s.town == town)]
        if not pool:
            raise ValueError("no subject fits this misuse in the district; try a larger one")
        s = self.rng.choice(pool)
        self.season.reserved.add(s.id)
        return s

    def shop(self, pred: Callable[[Shop], bool] = lambda s: True, fresh: bool = True) -> Shop:
        mine = [s for s in self.d.shops if pred(s) and s.id not in self.season.closed_shops]
        pool = [s for s in mine if not (fresh and s.id in self.used_shops)] or mine
        if not pool:
            raise ValueError("no shop fits this misuse in the district; try a larger one")
        s = self.rng.choice(pool)
        self.used_shops.add(s.id)
        return s

    def add(self, inj: Injection) -> Injection:
        self.plan.injections.append(inj)
        return inj

    def allowance(self, s: Subject, category: str, day: int) -> int:
        return self.d.allowance(s.id, category, self.day(day).isoformat())

    def products(self, status: str, designated: bool | None = None, ingredient: str | None = None) -> list:
        out = []
        for p in self.d.products:
            if p.kind != "pesticide":
                continue
            st = _catalogue.status_on(self.d.catalogue, self.d.catalogue["products"][p.key], self.day(0).isoformat())
            if st["status"] != status or (designated is not None and bool(st.get("designated")) != designated):
                continue
            if ingredient and ingredient not in (st.get("restricted") or []):
                continue
            out.append(p)
        return out

    def small_pesticide(self):
        return min(self.products(_catalogue.NORMAL), key=lambda p: p.net)


# ---------------------------------------------------------------- at the counter

def counter_sale(season: Season, shop: str, subject: Subject, lines: list[tuple[str, int]],
                 method: str = "card"):
    """A sale through the shop terminal's counter (card read and verified, or a clerk override)."""
    agent = season.fleet.agent(season.terminal_of(shop))
    counter = agent.counter
    if method == "override":
        identity = counter.identify_override(subject.id, "override_reader_fault")
    else:
        identity = counter.read_card(subject.card.payload, subject.card.uid)
    cart = Cart()
    for ean, packs in lines:
        counter.scan(cart, ean, packs)
    started = time.perf_counter()
    outcome = counter.checkout(identity, cart)
    season.fleet.note_committed(agent.terminal, outcome.seq, started)
    season.shoppers.count(outcome, agent)
    return outcome


def forged_sale(season: Season, shop: str, subject: Subject, product, packs: int = 1,
                identity: str = "card+face") -> int:
    """A sale the counter's policy would have refused, written into the ledger as
    a tampered or stale terminal would: correctly signed, so only the gateway's
    rules can catch it."""
    agent = season.fleet.agent(season.terminal_of(shop))
    body = {"subject": subject.id, "identity": identity, "mode": "offline", "clerk": "clerk1",
            "items": [{"product": product.key, "spec": product.spec, "packs": packs, "decision": "approve",
                       "reasons": []}],
            "consumption": {}, "reasons": [], "sale_id": f"{agent.terminal}-forged-{agent.ledger.head + 1}",
            "card": subject.card.card_no}
    return agent.record("sale", body).seq


def first_open(shop: Shop, after: int = 60) -> int:
    """A minute `after` minutes into the shop's first opening span."""
    a, b = opening_spans(shop.hours)[0]
    return min(a + after, b - 30)


# ---------------------------------------------------------------- misuse kinds

def over_quota_offline(p: Planner) -> None:
    """One subject buys nitrogen at two shops of its town while both are offline,
    each within its offline allowance, until together past the year's quota."""
    towns = {}
    for s in p.d.shops:
        if s.id not in p.used_shops:
            towns.setdefault(s.town, []).append(s)
    town, shops = max(towns.items(), key=lambda kv: (len(kv[1]), kv[0]))
    if len(shops) < 2:
        raise ValueError("over_quota_offline needs a town with two shops")
    a, b = shops[0], shops[1]
    p.used_shops.update({a.id, b.id})
    s = p.subject(lambda s: 92_000 <= p.allowance(s, "fert_n", 1) <= 200_000 and not s.group, town)
    p.plan.links.update({a.terminal, b.terminal})
    cut, back = p.when(1, 7 * 60), p.when(3, 6 * 60)
    inj = p.add(Injection("over_quota_offline", cut, f"{a.id},{b.id}", f"{a.terminal},{b.terminal}", s.id,
                          [expect("over_quota", s.id), expect("terminal_silent", terminal=a.terminal),
                           expect("terminal_silent", terminal=b.terminal)],
                          f"fert_n allowance {p.allowance(s, 'fert_n', 1) // 1000} kg; shops offline 2 days",
                          until_ms=back))
    allowance = p.allowance(s, "fert_n", 1)
    state = {"bought": 0, "local": {a.id: 0, b.id: 0}}
    season = p.season
    season.at(cut, lambda se: (se.links[a.terminal].unplug(), se.links[b.terminal].unplug()), None, "unplug")
    season.at(back, lambda se: (se.links[a.terminal].restore(), se.links[b.terminal].restore()), None, "restore")
    for day, minute, shop in ((1, 9 * 60, a), (1, 11 * 60 + 30, b), (2, 9 * 60, a), (2, 11 * 60 + 30, b),
                              (2, 14 * 60 + 30, a), (2, 17 * 60, b)):
        def buy(se: Season, shop=shop) -> None:
            if state["bought"] > allowance:
                return
            cached = allowance - state["local"][shop.id]
            bags = min(50_000, cached // 2) // 23_000
            if bags < 1:
                return
            out = counter_sale(se, shop.id, s, [(UREA, bags)])
            got = out.consumption.get("fert_n", 0) if out.approved else 0
            state["bought"] += got
            state["local"][shop.id] += got
            inj.note += f"; {shop.terminal} {out.mode} {out.decision} {got // 1000} kg N"
        season.at(p.when(day, minute), buy, shop.id, "over_quota_offline")
    p.season.offline_windows.append(({a.id, b.id}, cut, back))


def card_sharing(p: Planner) -> None:
    """A card lent out: used at two shops far apart within minutes."""
    pairs = [(x, y) for x in p.d.shops for y in p.d.shops if x.id < y.id
             and x.id not in p.used_shops and y.id not in p.used_shops]
    a, b = max(pairs, key=lambda xy: (xy[0].lat - xy[1].lat) ** 2 + (xy[0].lon - xy[1].lon) ** 2)
    p.used_shops.update({a.id, b.id})
    s = p.subject(lambda s: not s.group)
    t = p.when(2, 10 * 60)
    p.add(Injection("card_sharing", t, f"{a.id},{b.id}", f"{a.terminal},{b.terminal}", s.id,
                    [expect("card_travel_impossible", s.id)], "same card at two distant shops 10 min apart"))
    prod = p.small_pesticide()
    p.season.at(t, lambda se: counter_sale(se, a.id, s, [(prod.ean, 1)]), a.id, "card_sharing")
    p.season.at(t + 10 * MINUTE, lambda se: counter_sale(se, b.id, s, [(prod.ean, 1)]), b.id, "card_sharing")


def _split_product(p: Planner):
    """A normal pesticide with packs of at least 1 kg or 1 L: three of them pass the 3 kg limit."""
    return max((x for x in p.products(_catalogue.NORMAL) if x.net >= 1000), key=lambda x: x.net)


def split_purchase(p: Planner) -> None:
    """One subject buys the same pesticide three times within an hour."""
    shop = p.shop()
    prod = _split_product(p)
    s = p.subject(lambda s: s.kind != "farmer" and not s.group and p.allowance(s, "pesticide_ml", 3) >= 6 * prod.net)
    t = p.when(3, first_open(shop, 90))
    p.add(Injection("split_purchase", t, shop.id, shop.terminal, s.id, [expect("split_purchase", s.id)],
                    f"3 x {prod.name} within 40 minutes"))
    for k in range(3):
        p.season.at(t + k * 20 * MINUTE, lambda se: counter_sale(se, shop.id, s, [(prod.ean, 1)]), shop.id,
                    "split_purchase")


def split_purchase_group(p: Planner) -> None:
    """Members of one household buy two bags of urea each within an hour: three
    purchases of 100 kg, 300 kg together, past the 200 kg limit."""
    groups: dict[str, list[Subject]] = {}
    for s in p.d.subjects:
        if s.group and s.id not in p.season.reserved:
            groups.setdefault(s.group, []).append(s)
    ok = [m for g, m in sorted(groups.items()) if len(m) >= 2 and m[0].home_shop not in p.season.closed_shops
          and all(p.allowance(x, "fert_n", 4) >= 60_000 for x in m)]
    if not ok:
        raise ValueError("no household can be used for split_purchase_group; try a larger district")
    members = p.rng.choice(ok)
    for m in members:
        p.season.reserved.add(m.id)
    shop = p.d.shop(members[0].home_shop)
    p.used_shops.add(shop.id)
    t = p.when(4, first_open(shop, 90))
    p.add(Injection("split_purchase_group", t, shop.id, shop.terminal, members[0].id,
                    [expect("split_purchase_group", terminal=shop.terminal)],
                    f"household {members[0].group}: {len(members)} members, 3 purchases within 40 minutes"))
    for k in range(3):
        m = members[k % len(members)]
        p.season.at(t + k * 20 * MINUTE, lambda se, m=m: counter_sale(se, shop.id, m, [(UREA, 2)]), shop.id,
                    "split_purchase_group")


def _restricted_sale(p: Planner) -> tuple[Subject, object, list[dict]]:
    """A subject and a restricted-use product (designated shops only) it holds a
    permit for, when the catalogue on the run's dates and the registry allow;
    else any subject and product, and the missing permit is expected too."""
    products = p.products(_catalogue.RESTRICTED, designated=True)
    if not products:
        raise ValueError("the catalogue has no restricted-use product on these dates")
    for prod in products:
        st = _catalogue.status_on(p.d.catalogue, p.d.catalogue["products"][prod.key], p.day(0).isoformat())
        ingredients = set(st.get("restricted") or [])
        holders = [s for s in p.d.subjects if s.id not in p.season.reserved and not s.group and any(
            ingredients <= set(pm["ingredients"]) for pm in s.permits)]
        if holders:
            s = p.rng.choice(holders)
            p.season.reserved.add(s.id)
            return s, prod, []
    s = p.subject(lambda s: not s.group)
    return s, products[0], [expect("restricted_sold_no_permit", s.id)]


def restricted_not_designated(p: Planner) -> None:
    shop = p.shop(lambda s: not s.designated)
    s, prod, also = _restricted_sale(p)
    t = p.when(1, first_open(shop, 120))
    p.add(Injection("restricted_not_designated", t, shop.id, shop.terminal, s.id,
                    [expect("restricted_sold_not_designated", s.id, shop.terminal)] + also,
                    f"{prod.name} by a shop without the licence (tampered terminal)"))
    p.season.at(t, lambda se: forged_sale(se, shop.id, s, prod), shop.id, "restricted_not_designated")


def restricted_no_permit(p: Planner) -> None:
    shop = p.shop(lambda s: s.designated)
    s = p.subject(lambda s: not s.permits and not s.group)
    prod = p.products(_catalogue.RESTRICTED, designated=True)[0]
    t = p.when(2, first_open(shop, 150))
    p.add(Injection("restricted_no_permit", t, shop.id, shop.terminal, s.id,
                    [expect("restricted_sold_no_permit", s.id, shop.terminal)],
                    f"{prod.name} to a subject without a permit (tampered terminal)"))
    p.season.at(t, lambda se: forged_sale(se, shop.id, s, prod), shop.id, "restricted_no_permit")


def face_missing(p: Planner) -> None:
    shop = p.shop(lambda s: s.designated, fresh=False)
    s, prod, also = _restricted_sale(p)
    t = p.when(3, first_open(shop, 200))
    p.add(Injection("face_missing", t, shop.id, shop.terminal, s.id,
                    [expect("face_check_missing", s.id, shop.terminal)] + also,
                    f"{prod.name} on the card alone where card and face are required"))
    p.season.at(t, lambda se: forged_sale(se, shop.id, s, prod, identity="card"), shop.id, "face_missing")


def banned_sold(p: Planner) -> None:
    shop = p.shop()
    s = p.subject(lambda s: not s.group)
    prod = p.products(_catalogue.BANNED)[0]
    t = p.when(4, first_open(shop, 100))
    p.add(Injection("banned_sold", t, shop.id, shop.terminal, s.id,
                    [expect("banned_product_sold", s.id, shop.terminal)], f"{prod.name} (banned)"))
    p.season.at(t, lambda se: forged_sale(se, shop.id, s, prod), shop.id, "banned_sold")


def override_rate(p: Planner) -> None:
    """A clerk sells without cards as routine: eight overrides in the first morning."""
    shop = p.shop()
    prod = p.small_pesticide()
    buyers = [p.subject(lambda s: not s.group) for _ in range(12)]
    t = p.when(0, first_open(shop, 30))
    p.add(Injection("override_rate", t, shop.id, shop.terminal, None,
                    [expect("override_rate_high", terminal=shop.terminal)],
                    "12 clerk overrides in the first morning"))
    for k, s in enumerate(buyers):
        p.season.at(t + k * 8 * MINUTE, lambda se, s=s: counter_sale(se, shop.id, s, [(prod.ean, 1)], "override"),
                    shop.id, "override_rate")


def ledger_tampering(p: Planner) -> None:
    """Two sales made while offline, then the first deleted from the ledger (the
    shop switched the terminal off and edited its SD card) before it uploads."""
    shop = p.shop()
    p.plan.links.add(shop.terminal)
    s1 = p.subject(lambda s: not s.group)
    s2 = p.subject(lambda s: not s.group)
    prod = p.small_pesticide()
    cut = p.when(5, first_open(shop, 60))
    p.add(Injection("ledger_tampering", cut, shop.id, shop.terminal, s1.id,
                    [expect("ledger_gap", terminal=shop.terminal)], "an offline sale deleted from the ledger",
                    until_ms=cut + 2 * HOUR))
    seqs: list[int] = []
    term = shop.terminal
    # on the shop's own worker, in order: a counter running late must still
    # sell offline, and delete before the link is back
    p.season.at(cut, lambda se: se.links[term].unplug(), shop.id, "unplug")
    p.season.at(cut + 20 * MINUTE, lambda se: seqs.append(counter_sale(se, shop.id, s1, [(prod.ean, 1)]).seq),
                shop.id, "ledger_tampering")
    p.season.at(cut + 40 * MINUTE, lambda se: seqs.append(counter_sale(se, shop.id, s2, [(prod.ean, 1)]).seq),
                shop.id, "ledger_tampering")

    def tamper(se: Season) -> None:
        victim = seqs[0]
        se.fleet.power_off(term)
        conn = sqlite3.connect(se.fleet.ledger_path(term))
        try:
            conn.executescript("DROP TRIGGER IF EXISTS ledger_no_delete;")
            conn.execute("DELETE FROM ledger WHERE seq = ?", [victim])
            conn.commit()
        finally:
            conn.close()
        p.plan.tampered.setdefault(term, set()).add(victim)
        se.fleet.power_on(term)
    p.season.at(cut + 60 * MINUTE, tamper, shop.id, "ledger_tampering")
    p.season.at(cut + 2 * HOUR, lambda se: se.links[term].restore(), shop.id, "restore")
    p.season.offline_windows.append(({shop.id}, cut, cut + 2 * HOUR))


def after_hours(p: Planner) -> None:
    shop = p.shop()
    s = p.subject(lambda s: not s.group)
    prod = p.small_pesticide()
    close = opening_spans(shop.hours)[-1][1]
    t = p.when(5, min(close + 90, 23 * 60))
    p.add(Injection("after_hours", t, shop.id, shop.terminal, s.id,
                    [expect("sale_outside_hours", s.id, shop.terminal)], "a sale 90 minutes after closing"))
    p.season.at(t, lambda se: counter_sale(se, shop.id, s, [(prod.ean, 1)]), shop.id, "after_hours")


# ---------------------------------------------------------------- faults

def broker_restart(p: Planner) -> None:
    t = p.when(2, 15 * 60)
    p.add(Injection("broker_restart", t, note="Mosquitto killed, back after 1 s of real time", fault=True))

    def restart(se: Season) -> None:
        se.broker.kill()
        time.sleep(1)
        se.broker.start()
    p.season.at(t, restart, None, "broker_restart")


def shop_offline(p: Planner) -> None:
    """A shop's network is down for two days; it sells offline, then uploads."""
    shop = p.shop()
    p.plan.links.add(shop.terminal)
    cut, back = p.when(3, 6 * 60), p.when(5, 6 * 60)
    p.add(Injection("shop_offline", cut, shop.id, shop.terminal, None,
                    [expect("terminal_silent", terminal=shop.terminal)], "network down for two days",
                    fault=True, until_ms=back))
    p.season.at(cut, lambda se: se.links[shop.terminal].unplug(), None, "unplug")
    p.season.at(back, lambda se: se.links[shop.terminal].restore(), None, "restore")
    p.season.offline_windows.append(({shop.id}, cut, back))


def power_loss(p: Planner) -> None:
    shop = p.shop()
    t = p.when(1, first_open(shop, 180))
    p.add(Injection("power_loss", t, shop.id, shop.terminal, None, [], "power cut for one hour",
                    fault=True, until_ms=t + HOUR))
    p.season.at(t, lambda se: se.fleet.power_off(shop.terminal), shop.id, "power_off")
    p.season.at(t + HOUR, lambda se: se.fleet.power_on(shop.terminal), shop.id, "power_on")


def clock_drift(p: Planner) -> None:
    shop = p.shop()
    p.plan.drift[shop.terminal] = DRIFT_MS
    p.add(Injection("clock_drift", p.when(0, 0), shop.id, shop.terminal, None,
                    [expect("clock_skew", terminal=shop.terminal)], f"clock {DRIFT_MS // MINUTE} minutes ahead",
                    fault=True))


def disk_full(p: Planner) -> None:
    shop = p.shop()
    t = p.when(4, first_open(shop, 30))
    p.add(Injection("disk_full", t, shop.id, shop.terminal, None, [],
                    "ledger disk full for three hours: sales refused at the counter", fault=True,
                    until_ms=t + 3 * HOUR))

    def fill(se: Season, on: bool) -> None:
        se.fleet.agent(shop.terminal).ledger.reserve_bytes = (1 << 62) if on else 0
    p.season.at(t, lambda se: fill(se, True), shop.id, "disk_full")
    p.season.at(t + 3 * HOUR, lambda se: fill(se, False), shop.id, "disk_full")


PLANNERS = {name: globals()[name] for name in MISUSE + FAULTS}


def parse_kinds(text: str | None, known: tuple[str, ...], what: str) -> list[str]:
    """"all", "" or a comma-separated list of known kinds."""
    if not text:
        return []
    if text.strip() == "all":
        return list(known)
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in known]
    if bad:
        raise ValueError(f"unknown {what} {', '.join(bad)}; known: {', '.join(known)}")
    return kinds


def make_plan(district: District, season: Season, seed: int, misuse: list[str], faults: list[str]) -> Plan:
    planner = Planner(district, season, seed)
    for kind in misuse + faults:
        PLANNERS[kind](planner)
    return planner.plan
