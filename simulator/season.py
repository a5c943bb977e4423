"""A simulated season on the virtual clock: the district's buyers, the injected
misuse and the faults, each played at its virtual time.

Everything that happens is an event on one timeline, (virtual ms, shop, action).
The player sleeps until the clock shows an event's time, then hands it to the
worker that owns its shop, so one shop's customers are served one after
another, as at a real counter, while shops serve in parallel. Events without
a shop (a broker restart) run on the player itself.

The natural buying is kept clean on purpose, so that what the gateway raises
can be told apart from what was injected: a subject buys at most once a day, a
household at most once a day, the subjects a misuse uses buy nothing else, and
a sale that would be stamped outside its shop's hours (the counter fell behind
the clock) is skipped and counted, not made.
"""

from __future__ import annotations

import collections
import datetime as dt
import heapq
import itertools
import logging
import queue
import random
import threading
from dataclasses import dataclass, field
from typing import Callable

from protocols.clock import Clock
from simulator.district import District, Purchase, is_open, purchases_on
from simulator.fleet import Fleet
from simulator.shoppers import Shoppers

log = logging.getLogger(__name__)

TZ = dt.timezone(dt.timedelta(hours=8))   # the district's local time (China)


def local_ms(date: dt.date, minute: int) -> int:
    """Epoch ms of `minute` past local midnight on `date`."""
    midnight = dt.datetime(date.year, date.month, date.day, tzinfo=TZ)
    return int(midnight.timestamp() * 1000) + minute * 60_000


def local_parts(ms: int) -> tuple[dt.date, int]:
    t = dt.datetime.fromtimestamp(ms / 1000, TZ)
    return t.date(), t.hour * 60 + t.minute


@dataclass(order=True)
class Event:
    at_ms: int
    order: int
    shop: str | None = field(compare=False)
    label: str = field(compare=False)
    action: Callable[["Season"], None] = field(compare=False, repr=False)


class Season:
    def __init__(self, district: District, clock: Clock, start: dt.date, days: int, seed: int = 1,
                 workers: int = 4):
        """The fleet comes later (`attach`): the misuse plan, made first, decides
        which terminals get a netem link or a clock of their own."""
        self.district = district
        self.clock = clock
        self.start = start
        self.days = days
        self.seed = seed
        self.rng = random.Random(f"{seed}-season")
        self.fleet: Fleet | None = None
        self.shoppers: Shoppers | None = None
        self.end_ms = local_ms(start + dt.timedelta(days=days), 0)
        self._events: list[Event] = []
        self._order = itertools.count()
        self.reserved: set[str] = set()           # subjects a misuse uses: no natural buying
        self.closed_shops: set[str] = set()       # shops whose counter is not ours to play (the demo's kiosk)
        self.quiet: dict[str, tuple[int, int]] = {}  # subject -> (from, to): buys nowhere then
        self.skipped = collections.Counter()      # natural purchases not made, by why
        self.lock = threading.Lock()
        self._queues = [queue.Queue() for _ in range(max(1, workers))]
        self._shop_worker = {s.id: i % len(self._queues) for i, s in enumerate(district.shops)}
        self.errors: list[str] = []
        self.offline_windows: list[tuple[set[str], int, int]] = []   # (shops, from, to): unplugged
        self.last_bought: dict[str, tuple[int, str]] = {}             # subject -> (time, shop)
        self.links: dict = {}      # terminal -> simulator.netem.Link (set by the runner)
        self.broker = None         # simulator.broker.Mosquitto (set by the runner)

    def attach(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.shoppers = Shoppers(self.district, fleet, seed=self.seed)

    # -- building the timeline

    def at(self, at_ms: int, action: Callable[["Season"], None], shop: str | None = None, label: str = "") -> None:
        heapq.heappush(self._events, Event(at_ms, next(self._order), shop, label, action))

    def add_natural(self) -> int:
        """The district's purchase pattern, day by day, cleaned (module docstring)."""
        n = 0
        for d in range(self.days):
            date = self.start + dt.timedelta(days=d)
            buyers: set[str] = set()
            groups: set[str] = set()
            for p in purchases_on(self.district, self.rng, date):
                subject = self.district.subject(p.subject)
                if p.shop in self.closed_shops:
                    continue
                if p.subject in self.reserved or p.subject in buyers or (subject.group and subject.group in groups):
                    continue
                buyers.add(p.subject)
                if subject.group:
                    groups.add(subject.group)
                self.at(local_ms(date, p.minute), _natural(p), p.shop, "purchase")
                n += 1
        return n

    # -- playing it

    def play(self, stop: threading.Event, tick: Callable[[int], None] = lambda ms: None) -> None:
        """Until the last event has run (or `stop`): `tick(virtual ms)` now and then."""
        threads = [threading.Thread(target=self._work, args=(q,), name=f"season-{i}", daemon=True)
                   for i, q in enumerate(self._queues)]
        for t in threads:
            t.start()
        try:
            while self._events and not stop.is_set():
                event = heapq.heappop(self._events)
                wait = self.clock.real_s_until(event.at_ms)
                while wait > 0 and not stop.is_set():
                    tick(self.clock.wall_ms())
                    stop.wait(min(wait, 0.25))
                    wait = self.clock.real_s_until(event.at_ms)
                if event.shop is None:
                    self._run(event)
                else:
                    self._queues[self._shop_worker[event.shop]].put(event)
                tick(self.clock.wall_ms())
            while not stop.is_set() and self.clock.wall_ms() < self.end_ms:
                tick(self.clock.wall_ms())
                stop.wait(min(0.25, max(0.0, self.clock.real_s_until(self.end_ms))))
        finally:
            for q in self._queues:
                q.put(None)
            for t in threads:
                t.join(timeout=60)
        tick(self.clock.wall_ms())

    def _work(self, q: queue.Queue) -> None:
        while True:
            event = q.get()
            if event is None:
                return
            self._run(event)

    def _run(self, event: Event) -> None:
        try:
            event.action(self)
        except Exception as err:  # one broken event must not end the season
            log.exception("season event failed: %s", event.label)
            with self.lock:
                self.errors.append(f"{event.label}: {err!r}")

    # -- helpers for events

    def terminal_of(self, shop: str) -> str:
        return self.district.shop(shop).terminal

    def stamped_minute(self, terminal: str) -> tuple[dt.date, int]:
        """Local date and minute the terminal's clock shows now (it may drift)."""
        return local_parts(self.fleet.agent(terminal).wall_ms())

    def can_serve(self, purchase: Purchase) -> str | None:
        """Why a natural purchase is not made now, or None."""
        shop = self.district.shop(purchase.shop)
        if shop.terminal in self.fleet.down:
            return "no_power"
        if not is_open(shop, self.stamped_minute(shop.terminal)[1]):
            return "late"
        now = self.clock.wall_ms()
        window = self.quiet.get(purchase.subject)
        if window and window[0] <= now <= window[1]:
            return "quiet"
        offline = self.offline_until(purchase.shop, now)
        if offline is not None:
            # an offline counter decides from balances synced a while ago: a buyer
            # who bought elsewhere lately would go over quota by our own doing
            last = self.last_bought.get(purchase.subject)
            if last and last[1] != purchase.shop and now - last[0] < 3 * 86_400_000:
                return "stale_balance"
        return None

    def offline_until(self, shop: str, now: int) -> int | None:
        """End of the unplugged window `shop` is in now, if any."""
        for shops, start, end in self.offline_windows:
            if shop in shops and start <= now < end:
                return end
        return None

    def served(self, purchase: Purchase) -> None:
        """After a natural sale: one made offline keeps its buyer from buying
        elsewhere until a day after the shop is back (its record must reach
        the gateway first, or a second shop would sell past the quota)."""
        now = self.clock.wall_ms()
        with self.lock:
            self.last_bought[purchase.subject] = (now, purchase.shop)
            end = self.offline_until(purchase.shop, now)
            if end is not None:
                self.quiet[purchase.subject] = (now, end + 86_400_000)


def _natural(purchase: Purchase) -> Callable[[Season], None]:
    def serve(season: Season) -> None:
        why = season.can_serve(purchase)
        if why:
            with season.lock:
                season.skipped[why] += 1
            return
        season.shoppers.serve(purchase)
        season.served(purchase)
    return serve

