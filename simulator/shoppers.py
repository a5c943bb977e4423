"""Buyers at the counters: the district's purchase pattern played through each
shop terminal's public counter API (`agent.counter`), exactly as the kiosk UI
drives it: the subject's signed card is read and verified, the packs' EAN codes
are scanned into a cart, and checkout asks the gateway (else decides offline)
and commits the sale or refusal to the ledger before it answers.

Without a virtual clock yet, a simulated day is played as fast as `rate`
allows, in wall-clock time: records carry the real time, so a demo running at
night sells outside the shops' opening hours (and the gateway says so), and a
subject buys several times an hour (split-purchase and quota refusals come
sooner than in a real season).
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import random
import threading
import time

from firmware.counter import Cart, CounterError
from firmware.ledger import LedgerError
from protocols import authz, card as _card, labelcode
from simulator.district import District, Purchase, purchases_on
from simulator.fleet import Fleet

log = logging.getLogger(__name__)


class Shoppers:
    def __init__(self, district: District, fleet: Fleet, seed: int = 1, start: dt.date | None = None):
        self.district = district
        self.fleet = fleet
        self.rng = random.Random(seed)
        self.date = start or dt.date.fromisoformat(authz.local_date(int(time.time() * 1000)))
        self.day = self.date                      # the simulated day being played
        self.queue: collections.deque[Purchase] = collections.deque()
        self.terminal_of = {s.id: s.terminal for s in district.shops}
        self.tally = collections.Counter()        # approve, partial, refuse, online, offline, errors
        self.codes = collections.Counter()        # reason codes of refused lines and carts
        self.auth_ms: list[float] = []            # online authorization round trips
        self.lock = threading.Lock()

    def next_purchase(self) -> Purchase:
        while not self.queue:
            self.day = self.date
            self.queue.extend(purchases_on(self.district, self.rng, self.date))
            self.date += dt.timedelta(days=1)
        return self.queue.popleft()

    def serve(self, purchase: Purchase):
        """One customer at one counter; returns the counter's Outcome, or None
        when the counter could not take the sale (the reason is tallied)."""
        terminal = self.terminal_of[purchase.shop]
        agent = self.fleet.agent(terminal)
        counter = agent.counter
        subject = self.district.subject(purchase.subject)
        started = time.perf_counter()
        try:
            identity = counter.read_card(subject.card.payload, subject.card.uid)
            cart = Cart()
            for product, spec, packs, ean in purchase.lines:
                counter.scan(cart, ean, packs)
            outcome = counter.checkout(identity, cart)
        except (_card.CardRejected, CounterError, labelcode.LabelError, LedgerError) as err:
            with self.lock:
                self.tally["errors"] += 1
                self.codes[getattr(err, "code", type(err).__name__)] += 1
            log.warning("counter error terminal=%s subject=%s: %s", terminal, subject.id, err)
            return None
        self.fleet.note_committed(terminal, outcome.seq, started)
        self.count(outcome, agent)
        return outcome

    def count(self, outcome, agent) -> None:
        """Tally a checkout; an online one adds its authorization round trip."""
        rtt = agent.auth.last_rtt_ms if outcome.mode == "online" else None
        with self.lock:
            self.tally[outcome.decision] += 1
            self.tally[outcome.mode] += 1
            if outcome.decision != "approve":
                self.codes.update(outcome.codes)
            if rtt is not None:
                self.auth_ms.append(rtt)

    def run(self, rate: float, stop: threading.Event) -> None:
        """Serve purchases at `rate` per second (whole district) until `stop`;
        a slow checkout delays the next ones, it never skips a customer."""
        interval = 1.0 / rate
        start = time.monotonic()
        n = 0
        while not stop.is_set():
            due = start + n * interval
            wait = due - time.monotonic()
            if wait > 0 and stop.wait(wait):
                return
            self.serve(self.next_purchase())
            n += 1

    def snapshot(self) -> dict:
        with self.lock:
            return {"tally": dict(self.tally), "codes": dict(self.codes.most_common())}
