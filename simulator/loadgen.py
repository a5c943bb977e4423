"""A counter that sells by itself: synthetic sales at a steady rate through the
real agent, for soak tests, benchmarks and fault drills.

It lives in the simulator, not in `firmware`, because every sale it makes is a
signed record in the shop's legal ledger: a shipped terminal must have no way,
by configuration or otherwise, to switch it on. `python -m simulator sell`
(simulator/sell_cli.py) runs a real agent with it.

Every sale goes through `Agent.record`, so "approved" is reported (the
`on_approved` callback) only after the ledger commit, exactly as at the counter.
Randomness comes from a seeded generator, so a drill replays the same sales.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Callable

from firmware.agent import Agent
from firmware.ledger import LedgerError, Stored

PRODUCTS = ("PD20080001", "PD20111234", "PD20171234", "FERT2019001", "FERT2020456")


def sale_body(rng: random.Random, terminal: str, n: int) -> dict:
    packs = rng.randint(1, 4)
    return {
        "subject": f"S{rng.randint(1, 5000):05d}",
        "items": [{"product": rng.choice(PRODUCTS), "packs": packs, "amount": packs * 500, "unit": "g"}],
        "identity": "card",
        "mode": "online",
        "clerk": "clerk1",
        "sale_id": f"{terminal}-{n}",
    }


class LoadSettings:
    """How the synthetic counter sells: `rate` sales a second, `count` in all
    (0: until stopped), the sales drawn from a generator seeded with `seed`."""

    def __init__(self, rate: float = 5.0, count: int = 0, seed: int = 1):
        if not rate > 0:
            raise ValueError("rate must be positive")
        if count < 0:
            raise ValueError("count must not be negative")
        self.rate, self.count, self.seed = rate, count, seed


class LoadGenerator:
    def __init__(self, agent: Agent, settings: LoadSettings,
                 on_approved: Callable[[Stored, dict], None] = lambda stored, body: None,
                 on_refused: Callable[[LedgerError], None] = lambda err: None,
                 monotonic=time.monotonic, sleep=time.sleep):
        self.agent = agent
        self.settings = settings
        self.on_approved = on_approved
        self.on_refused = on_refused
        self._rng = random.Random(settings.seed)
        self._stop = threading.Event()
        self._monotonic = monotonic
        self._sleep = sleep
        self.sold = 0

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        interval = 1.0 / self.settings.rate
        next_at = self._monotonic()
        n = self.agent.ledger.head  # continue numbering sale ids after a restart
        while not self._stop.is_set():
            if self.settings.count and self.sold >= self.settings.count:
                return
            n += 1
            body = sale_body(self._rng, self.agent.terminal, n)
            try:
                stored = self.agent.record("sale", body)
            except LedgerError as err:
                self.on_refused(err)
            else:
                self.sold += 1
                self.on_approved(stored, body)
            next_at += interval
            delay = next_at - self._monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = self._monotonic()  # fell behind: don't burst to catch up
