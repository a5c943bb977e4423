"""Many real terminal agents in one process, each with its own ledger and its
own broker connection: the load generator for benchmarks and `simulator run`.

Sales go through `Agent.record`, exactly the counter's path. The fleet notes
when each sale was committed and when the gateway's end-to-end ack covered it,
which gives the terminal-commit-to-gateway-commit latency (slightly more, as
it includes the ack's trip back: a conservative figure).
"""

from __future__ import annotations

import random
import threading
import time
import tomllib
from pathlib import Path
from typing import Callable

from firmware.agent import Agent
from firmware.config import parse
from simulator.loadgen import sale_body
from gateway.enforcement.fleet import Credentials
from simulator.netloop import NetLoop
from simulator.processes import terminal_config_text


PER_LOOP = 50      # connections per network thread: ack and config handling runs on it, with fsyncs
LOOPS_MAX = 16


class Fleet:
    def __init__(self, workdir: Path, broker_url: str, creds: list[Credentials], seed: int = 1,
                 ack_timeout: float = 5.0, batch: int = 100, shops: dict[str, str] | None = None,
                 extra_toml: str = "", brokers: dict[str, str] | None = None,
                 clocks: dict[str, Callable[[], int]] | None = None, heartbeat_s: float | None = None,
                 ca: Path | None = None, certs: dict[str, tuple[Path, Path]] | None = None):
        """`shops` links terminals to their shop ids (default: the terminal id);
        `extra_toml` is appended to every agent's config, e.g. a [counter] section
        with the registry keys the district's cards are signed with; `brokers`
        and `clocks` give single terminals their own broker URL (a netem link
        that can cut them off) and their own wall clock (one that drifts).
        `ca` checks an mqtts:// broker; `certs` gives terminals a client
        certificate and key (their URL then names the certificate listener)."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(seed)
        self.latencies_ms: list[float] = []
        self.sold = 0
        self.refused = 0
        self._lock = threading.Lock()
        self._committed: list[dict[int, float]] = []
        self.agents: list[Agent] = []
        self._configs = {}
        self.down: set[str] = set()     # terminals without power
        self._clocks = clocks or {}
        # a few threads in epoll run every agent's connection (simulator/netloop.py)
        self.loops = [NetLoop(f"net-{i}") for i in range(max(1, min(LOOPS_MAX, -(-len(creds) // PER_LOOP))))]
        self._loop_of = {c.terminal: self.loops[i % len(self.loops)] for i, c in enumerate(creds)}
        for i, c in enumerate(creds):
            text = terminal_config_text(c, (brokers or {}).get(c.terminal, broker_url),
                                        self.workdir / f"{c.terminal}.ledger.db", ack_timeout=ack_timeout,
                                        batch=batch, shop=(shops or {}).get(c.terminal), ca=ca,
                                        **_cert_files((certs or {}).get(c.terminal)))
            config = parse(tomllib.loads(text + extra_toml), self.workdir)
            config.reserve_bytes = 0
            if heartbeat_s:
                config.uplink.heartbeat = heartbeat_s
            self._configs[c.terminal] = config
            pending: dict[int, float] = {}
            self._committed.append(pending)
            self.agents.append(self._new_agent(config, pending))
        self._by_terminal = {a.terminal: a for a in self.agents}
        self._pending = {a.terminal: p for a, p in zip(self.agents, self._committed)}

    def _new_agent(self, config, pending: dict[int, float]) -> Agent:
        clock = self._clocks.get(config.terminal)
        kwargs = {"wall_ms": clock} if clock else {}
        return Agent(config, on_acked=self._acked_hook(pending), network=self._loop_of[config.terminal], **kwargs)

    def power_off(self, terminal: str) -> None:
        """The terminal loses power: its agent is dropped without a goodbye (no
        "offline" status, no MQTT DISCONNECT: the broker sees the socket die and
        sends the will). Whatever it committed is on its disk."""
        agent = self._by_terminal[terminal]
        agent.uplink.abandon()
        agent.ledger.close()
        agent.config_store.close()
        self.down.add(terminal)

    def power_on(self, terminal: str) -> Agent:
        """It boots again: a new agent from what is on its disk alone."""
        index = next(i for i, a in enumerate(self.agents) if a.terminal == terminal)
        agent = self._new_agent(self._configs[terminal], self._committed[index])
        self.agents[index] = agent
        self._by_terminal[terminal] = agent
        agent.start()
        self.down.discard(terminal)
        return agent

    def _acked_hook(self, pending: dict[int, float]) -> Callable[[int, int], None]:
        def hook(old: int, new: int) -> None:
            now = time.perf_counter()
            with self._lock:
                for seq in range(old + 1, new + 1):
                    t = pending.pop(seq, None)
                    if t is not None:
                        self.latencies_ms.append((now - t) * 1000)
        return hook

    def start(self) -> None:
        for agent in self.agents:
            agent.start()

    def stop(self) -> None:
        for agent in self.agents:
            if agent.terminal not in self.down:
                agent.stop()
        for loop in self.loops:
            loop.close()

    def sell(self, index: int) -> None:
        agent = self.agents[index]
        body = sale_body(self.rng, agent.terminal, agent.ledger.head + 1)
        t = time.perf_counter()
        stored = agent.record("sale", body)
        with self._lock:
            self._committed[index][stored.seq] = t
        self.sold += 1

    def run_steady(self, rate: float, duration: float, tick: Callable[[int], None] = lambda n: None) -> None:
        """`rate` sales/s spread round-robin over the terminals for `duration` s."""
        interval = 1.0 / rate
        start = time.perf_counter()
        n = 0
        while True:
            due = start + n * interval
            now = time.perf_counter()
            if now - start >= duration:
                return
            if due > now:
                time.sleep(due - now)
            self.sell(n % len(self.agents))
            n += 1
            tick(1)

    def fill(self, per_terminal: int, tick: Callable[[int], None] = lambda n: None) -> None:
        for _ in range(per_terminal):
            for i in range(len(self.agents)):
                self.sell(i)
                tick(1)

    def ledger_path(self, terminal: str) -> Path:
        return self._configs[terminal].ledger_path

    def agent(self, terminal: str) -> Agent:
        return self._by_terminal[terminal]

    def note_committed(self, terminal: str, seq: int, started: float) -> None:
        """A record committed by another path (the counter): time its trip to the gateway."""
        with self._lock:
            if self._by_terminal[terminal].ledger.acked < seq:  # else the ack beat us: no sample
                self._pending[terminal][seq] = started

    def backlog(self) -> int:
        return sum(a.ledger.backlog for a in self.agents)

    def wait_acked(self, timeout: float, tick: Callable[[int], None] = lambda n: None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = self.backlog()
            tick(left)
            if left == 0:
                return True
            time.sleep(0.05)
        return False


def _cert_files(pair: tuple[Path, Path] | None) -> dict:
    return {"cert": pair[0], "key": pair[1]} if pair else {}
