"""Login throttling: per client address and per (address, user name), never
per account alone.

Why not an account lock: five wrong passwords used to lock a name for five
minutes whoever typed them, the right password included, so anyone could
keep a district officer out for good at one request a minute. Here every
counter is keyed by the address the request came from (after the trusted
proxy's X-Forwarded-For, gateway/api/security.py), so the officer's own
address never inherits an attacker's failures.

Three checks, all before any password hashing:
- `attempts`: a token bucket per address over every attempt, right or wrong
  (burst 20, one more every 3 s): a flood from one address costs one scrypt
  run per 3 s after the first 20;
- `address` back-off: past 10 failures from an address (across names), each
  further failure locks that address for twice as long as the last
  (1 s, 2 s, 4 s ... 15 min);
- `pair` back-off: past 5 failures for one name from one address, the same
  doubling for that pair; the right password from there resets the pair.
Failures are forgotten an hour after the last one.

Bounded: each map keeps at most `max_keys` entries, least recently used
dropped first, and IPv6 clients count per /64 (what one subscriber gets), so
rotating addresses buys an attacker nothing the bucket did not already give.
Nothing is written to the database; a restart forgets (it is not something an
attacker can cause). With several API processes each keeps its own counts.

Hashing itself is bounded too (`Hashing`): one scrypt run at a time in this
process (about 20 logins a second, far more than a district's staff need),
so a flood from many addresses costs one core at most, at the supervision
process's lower priority, and never holds a database lock (gateway/store/users.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    burst: int = 20                 # attempts an address may make at once (a town office at 8 am)
    refill_s: float = 3.0           # then one attempt per this many seconds
    address_free: int = 10          # failures from one address before its back-off starts
    pair_free: int = 5              # failures for one name from one address before the pair's back-off
    first_lock_s: float = 1.0
    max_lock_s: float = 900.0       # 15 minutes: a typo-prone user is never out for longer
    forget_s: float = 3600.0        # failures an hour old no longer count
    max_keys: int = 20_000          # per map: ~ a few MB at most
    # A refused attempt is answered after min(wait, tarpit_s): a client that
    # waits for each answer, as most floods do, then makes about one attempt a
    # second per connection instead of hundreds, and the wait costs an idle
    # coroutine, not CPU the authorizations need.
    tarpit_s: float = 1.0


def client_key(host: str | None) -> str:
    """The address a client is counted under: IPv4 as is, IPv6 by its /64,
    an IPv4-mapped IPv6 address as the IPv4 one; anything else verbatim."""
    if not host:
        return "?"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if addr.version == 6:
        if addr.ipv4_mapped:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


class _Lru:
    def __init__(self, size: int):
        self.size = size
        self.items: OrderedDict = OrderedDict()

    def get(self, key):
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key, value) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.size:
            self.items.popitem(last=False)

    def pop(self, key) -> None:
        self.items.pop(key, None)

    def __len__(self) -> int:
        return len(self.items)


class LoginThrottle:
    """`check` before hashing (seconds to wait, or 0), then `failed` or
    `succeeded`. Thread-safe; `clock` is monotonic seconds (passed in)."""

    def __init__(self, limits: Limits = Limits(), clock: Callable[[], float] = time.monotonic):
        self.limits, self.clock = limits, clock
        self._lock = threading.Lock()
        self.buckets = _Lru(limits.max_keys)      # address -> [tokens, at]
        self.addresses = _Lru(limits.max_keys)    # address -> [failures, last, locked_until]
        self.pairs = _Lru(limits.max_keys)        # (address, name) -> [failures, last, locked_until]

    def check(self, address: str, name: str) -> float:
        """0 to go ahead (one attempt taken from the address's bucket), else
        the seconds to wait; a refused attempt costs nothing more."""
        lim, now = self.limits, self.clock()
        with self._lock:
            wait = max(self._locked(self.addresses.get(address), now),
                       self._locked(self.pairs.get((address, name)), now))
            if wait > 0:
                return wait
            tokens, at = self.buckets.get(address) or (float(lim.burst), now)
            tokens = min(float(lim.burst), tokens + (now - at) / lim.refill_s)
            if tokens < 1:
                self.buckets.put(address, (tokens, now))
                return (1 - tokens) * lim.refill_s
            self.buckets.put(address, (tokens - 1, now))
            return 0.0

    def failed(self, address: str, name: str) -> None:
        now = self.clock()
        with self._lock:
            lock_a = self._fail(self.addresses, address, self.limits.address_free, now)
            lock_p = self._fail(self.pairs, (address, name), self.limits.pair_free, now)
        if lock_a or lock_p:
            log.warning("login back-off address=%s name=%s address_lock_s=%.0f pair_lock_s=%.0f",
                        address, name[:64], lock_a, lock_p)

    def succeeded(self, address: str, name: str) -> None:
        with self._lock:
            self.pairs.pop((address, name))

    def sizes(self) -> tuple[int, int, int]:
        return len(self.buckets), len(self.addresses), len(self.pairs)

    def _locked(self, entry, now: float) -> float:
        if entry is None:
            return 0.0
        return max(0.0, entry[2] - now)

    def _fail(self, table: _Lru, key, free: int, now: float) -> float:
        lim = self.limits
        entry = table.get(key)
        count = 0 if entry is None or now - entry[1] > lim.forget_s else entry[0]
        count += 1
        lock = 0.0
        if count > free:
            lock = min(lim.max_lock_s, lim.first_lock_s * math.pow(2, min(count - free - 1, 30)))
        table.put(key, (count, now, now + lock))
        return lock


class Busy(Exception):
    """No hashing slot came free in time."""


class Hashing:
    """At most `slots` password checks at once in this process; a login that
    waits longer than `wait_s` for a slot is refused (429) rather than queued
    without end. Waiting happens on the event loop, not in a worker thread,
    so a flood never takes the thread pool the other endpoints run on."""

    def __init__(self, slots: int = 1, wait_s: float = 5.0):
        self.slots, self.wait_s = slots, wait_s
        self._per_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    async def run(self, fn):
        """fn() in a worker thread once a slot is free, or raise Busy."""
        loop = asyncio.get_running_loop()
        sem = self._per_loop.get(loop)
        if sem is None:
            sem = self._per_loop[loop] = asyncio.Semaphore(self.slots)
        try:
            await asyncio.wait_for(sem.acquire(), self.wait_s)
        except asyncio.TimeoutError:
            raise Busy() from None
        try:
            return await run_in_threadpool(fn)
        finally:
            sem.release()
