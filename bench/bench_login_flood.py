"""Authorization latency with and without a login flood on the dashboard, one command:

    .venv/bin/python bench/bench_login_flood.py [--terminals 20] [--duration 15] [--threads 6]

Issue 15, item 11: six threads of anonymous logins (about 17/s) raised the
authorization p95 from 94 ms to 2,683 ms, because each login ran scrypt
inside BEGIN IMMEDIATE on the gateway database and every authorization
commit queued behind it; sales fell back to offline.

Three phases against one gateway (`gateway run --http`, the API in its
supervision child) with `--terminals` real agents selling online through a
real Mosquitto, each phase `--duration` seconds, measured the same way as
bench/bench_authz.py (the agent's round trip, terminal -> gateway -> terminal):
1. quiet: no logins;
2. flood, one address per thread: `--threads` threads of anonymous logins
   (names nobody has), each thread from its own loopback address
   (127.0.0.2 ...), as in the issue;
3. flood, rotating addresses: the same threads, each moving to a new
   loopback address every 5 attempts, so the per-address throttle never
   bites and every login runs scrypt: what is left is the hashing's CPU
   (at most two at once, outside any transaction).
The table gives the logins answered per second (by status) and the
authorization round trip p50/p95/p99 and offline fallbacks per phase.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import statistics
import sys
import tempfile
import threading
import time
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench_authz import prepare  # noqa: E402
from firmware.agent import Agent  # noqa: E402
from firmware.config import parse  # noqa: E402
from firmware.counter import Cart  # noqa: E402
from simulator.broker import Mosquitto, free_port, wait_port  # noqa: E402
from simulator.processes import GatewayProcess, provision_terminals, terminal_config_text, wait_for  # noqa: E402
from simulator.run_cli import percentile  # noqa: E402
from tests.support.quota_fixtures import card_identity  # noqa: E402

console = Console()


def flood(url: str, threads: int, rotate: bool, duration: float, out) -> None:
    """The flood, in a process of its own (so its HTTP clients do not share
    the agents' interpreter): `threads` threads of anonymous logins for
    `duration` seconds; puts the count of answers by status on `out`."""
    stop = threading.Event()
    codes: Counter = Counter()
    lock = threading.Lock()

    def one(k: int) -> None:
        n = 0
        client = None
        while not stop.is_set():
            if client is None or (rotate and n % 5 == 0):
                if client:
                    client.close()
                # 127.0.<k+1>.<x>: each thread its own addresses, never 127.0.0.1 (a trusted proxy's)
                address = f"127.0.{k + 1}.{(n // 5) % 250 + 2}" if rotate else f"127.0.0.{k + 2}"
                client = httpx.Client(base_url=url, timeout=30, transport=httpx.HTTPTransport(local_address=address))
            try:
                status = client.post("/api/login", json={"name": f"anon{k}-{n}", "password": "not-the-password"}
                                     ).status_code
            except httpx.HTTPError as err:
                status = type(err).__name__
            with lock:
                codes[status] += 1
            n += 1
        client.close()

    workers = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(threads)]
    for w in workers:
        w.start()
    stop.wait(duration)
    stop.set()
    for w in workers:
        w.join(30)
    out.put(dict(codes))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--terminals", type=int, default=20)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per phase")
    parser.add_argument("--threads", type=int, default=6, help="login flood threads")
    parser.add_argument("--think-ms", type=float, default=500.0, help="max random pause between a terminal's sales")
    parser.add_argument("--workdir", help="keep files here (default: a temporary directory)")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-login-flood-"))
    workdir.mkdir(parents=True, exist_ok=True)
    names = [f"BT{i + 1:03d}" for i in range(args.terminals)]
    db = workdir / "gateway.db"
    creds = {c.terminal: c for c in provision_terminals(db, names)}
    prepare(db, names)
    http_port = free_port()
    url = f"http://127.0.0.1:{http_port}"
    broker = Mosquitto(workdir / "broker").start()
    gateway = GatewayProcess(db, broker.url, workdir / "gateway.log",
                             extra_args=["--http", f"127.0.0.1:{http_port}"]).start()
    agents: list[Agent] = []
    results = []
    try:
        wait_port("127.0.0.1", http_port, timeout=60)
        for i, name in enumerate(names):
            text = terminal_config_text(creds[name], broker.url, workdir / f"{name}.ledger.db", shop=f"shop-{name}")
            config = parse(tomllib.loads(text + "\n[counter]\ndeadline_ms = 3000\n"), workdir)
            config.reserve_bytes = 0
            agent = Agent(config, rng=random.Random(i))
            agent.start()
            agents.append(agent)
        for agent in agents:
            wait_for(lambda: {"params", "subjects", "balances"} <= set(agent.config_store.versions()), 120,
                     f"{agent.terminal} config")
        for i, agent in enumerate(agents):   # warm up, not measured
            cart = Cart()
            cart.add("XK13-001-00101", "002", 1)
            agent.counter.checkout(card_identity(f"B{i:04d}", f"C{i:04d}"), cart)

        for label, threads, rotate in (("quiet", 0, False), ("flood, one address a thread", args.threads, False),
                                       ("flood, rotating addresses", args.threads, True)):
            rtts: list[float] = []
            offline = [0]
            codes: Counter = Counter()
            lock = threading.Lock()
            stop = threading.Event()

            def sell(index: int, agent: Agent) -> None:
                rng = random.Random(1000 + index)
                who = card_identity(f"B{index:04d}", f"C{index:04d}")
                while not stop.is_set():
                    cart = Cart()
                    cart.add("XK13-001-00101", "002", 1)
                    outcome = agent.counter.checkout(who, cart)
                    with lock:
                        if outcome.mode == "online":
                            rtts.append(agent.auth.last_rtt_ms)
                        else:
                            offline[0] += 1
                    stop.wait(rng.uniform(0, args.think_ms) / 1000)

            console.print(f"phase: {label} ({args.duration:.0f} s)")
            spawn = multiprocessing.get_context("spawn")
            answers = spawn.Queue()
            flooder = (spawn.Process(target=flood, args=(url, threads, rotate, args.duration, answers))
                       if threads else None)
            sellers = [threading.Thread(target=sell, args=(i, a), daemon=True) for i, a in enumerate(agents)]
            if flooder:
                flooder.start()
                time.sleep(1.0)   # the flood under way (the process starting) before the sales are measured
            started = time.monotonic()
            for t in sellers:
                t.start()
            stop.wait(args.duration - (1.0 if flooder else 0))
            stop.set()
            for t in sellers:
                t.join(30)
            elapsed = time.monotonic() - started
            if flooder:
                codes.update(answers.get(timeout=60))
                flooder.join(30)
                elapsed = args.duration
            results.append((label, codes, elapsed, rtts, offline[0]))
    finally:
        for agent in agents:
            agent.stop()
        gateway.stop()
        broker.kill()

    table = Table(title=f"authorization round trip, {len(names)} terminals, {args.duration:.0f} s a phase, "
                        f"{args.threads} login threads")
    for col in ("phase", "logins/s (by status)", "auth n", "p50 ms", "p95 ms", "p99 ms", "max ms", "offline"):
        table.add_column(col)
    for label, codes, elapsed, rtts, offline in results:
        logins = sum(codes.values())
        mix = ", ".join(f"{k}: {v}" for k, v in sorted(codes.items(), key=lambda kv: str(kv[0])))
        table.add_row(label, f"{logins / elapsed:.1f}" + (f" ({mix})" if mix else ""), str(len(rtts)),
                      *(f"{x:.1f}" for x in (statistics.median(rtts), percentile(rtts, 95), percentile(rtts, 99),
                                             max(rtts))) if rtts else ("-",) * 4, str(offline))
    console.print(table)
    console.print(f"files in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
