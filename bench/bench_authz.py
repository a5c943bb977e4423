"""Online authorization round trip and offline decision time, one command:

    .venv/bin/python bench/bench_authz.py [--terminals 50] [--duration 15] [--think-ms 500]

What it measures (targets from the quota issue):
1. authorization round trip terminal -> broker -> gateway (decide, commit) ->
   broker -> terminal, p50/p99, with `--terminals` real terminal agents (each
   its own MQTT connection, ledger and config store) selling at once through
   the counter API, each a closed loop with a random pause of up to
   `--think-ms` between sales; target p99 < 100 ms at 50 terminals. The
   whole checkout (round trip plus the ledger commit before "approved") is
   reported next to it;
2. offline decision time of `Counter.decide_offline` (the policy against the
   synced config and the cached balances in SQLite) for a five-line cart;
   target < 5 ms.

A real Mosquitto and the real gateway process (`python -m gateway run`) run on
this machine alongside the terminals, so the figures include all three sharing
its cores.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from firmware.agent import Agent  # noqa: E402
from firmware.config import parse  # noqa: E402
from firmware.counter import Cart  # noqa: E402
from gateway.enforcement import registry  # noqa: E402
from gateway.store import Store  # noqa: E402
from protocols import configsync  # noqa: E402
from simulator.broker import Mosquitto  # noqa: E402  (subclassed below)
from simulator.processes import GatewayProcess, provision_terminals, terminal_config_text, wait_for  # noqa: E402
from simulator.run_cli import percentile  # noqa: E402
from tests.support.quota_fixtures import card_identity, registry_public_hex  # noqa: E402

console = Console()
RTT_TARGET_MS = 100.0
OFFLINE_TARGET_MS = 5.0
TOWN = "330113001"
CART = (("XK13-001-00101", "002", 1), ("XK13-001-00102", "001", 1), ("PD20080101", "001", 2),
        ("PD20090105", "001", 1), ("NF2021-20101", "001", 1))


def prepare(db: Path, names: list[str]) -> None:
    """Shops in one town, the shipped params, one subject per terminal with room for every sale."""
    store = Store(db)
    try:
        conn = store.conn
        for name in names:
            conn.execute("INSERT OR REPLACE INTO shops(id, name, town, designated) VALUES (?, ?, ?, 0)",
                         [f"shop-{name}", name, TOWN])
        params = json.loads((ROOT / "protocols" / "data" / "policy_params.json").read_text("utf-8"))
        now = int(time.time() * 1000)
        registry.set_section(conn, configsync.PARAMS, params, now)
        subjects = [{"id": f"B{i:04d}", "status": "active", "town": TOWN,
                     "plots": [{"crop": "rice", "area_cmu": 10 ** 6}, {"crop": "vegetable", "area_cmu": 10 ** 6}]}
                    for i in range(len(names))]
        registry.import_subjects(conn, subjects, now)
        registry.add_keys(conn, [bytes.fromhex(registry_public_hex())], now)  # the cards below are signed with it
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--terminals", type=int, default=50)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of selling")
    parser.add_argument("--think-ms", type=float, default=500.0,
                        help="max random pause between a terminal's sales (default: ~180 sales/s from 50 terminals)")
    parser.add_argument("--offline-runs", type=int, default=2000)
    parser.add_argument("--workdir", help="keep files here (default: a temporary directory)")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-authz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    names = [f"BT{i + 1:03d}" for i in range(args.terminals)]
    db = workdir / "gateway.db"
    creds = {c.terminal: c for c in provision_terminals(db, names)}
    prepare(db, names)
    broker = Mosquitto(workdir / "broker").start()  # TCP_NODELAY on, see simulator/broker.py
    gateway = GatewayProcess(db, broker.url, workdir / "gateway.log").start()
    agents: list[Agent] = []
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("terminals syncing config", total=len(names))
            for i, name in enumerate(names):
                text = terminal_config_text(creds[name], broker.url, workdir / f"{name}.ledger.db",
                                            shop=f"shop-{name}")
                config = parse(tomllib.loads(text + "\n[counter]\ndeadline_ms = 1500\n"), workdir)
                config.reserve_bytes = 0
                agent = Agent(config, rng=random.Random(i))
                agent.start()
                agents.append(agent)
            for agent in agents:
                wait_for(lambda: {"params", "subjects", "balances"} <= set(agent.config_store.versions()), 120,
                         f"{agent.terminal} config")
                progress.advance(task)

            rtts: list[float] = []
            checkouts: list[float] = []
            offline = [0]
            lock = threading.Lock()
            stop = threading.Event()

            def sell(index: int, agent: Agent) -> None:
                rng = random.Random(1000 + index)
                who = card_identity(f"B{index:04d}", f"C{index:04d}")
                while not stop.is_set():
                    cart = Cart()
                    cart.add("XK13-001-00101", "002", 1)
                    started = time.perf_counter()
                    outcome = agent.counter.checkout(who, cart)
                    took = (time.perf_counter() - started) * 1000
                    with lock:
                        if outcome.mode == "online":
                            rtts.append(agent.auth.last_rtt_ms)
                            checkouts.append(took)
                        else:
                            offline[0] += 1
                    stop.wait(rng.uniform(0, args.think_ms) / 1000)

            # warm up: one sale per terminal, not measured
            for i, agent in enumerate(agents):
                cart = Cart()
                cart.add("XK13-001-00101", "002", 1)
                agent.counter.checkout(card_identity(f"B{i:04d}", f"C{i:04d}"), cart)
            task = progress.add_task(f"{len(agents)} terminals selling online", total=int(args.duration))
            threads = [threading.Thread(target=sell, args=(i, a), daemon=True) for i, a in enumerate(agents)]
            started = time.monotonic()
            for t in threads:
                t.start()
            while time.monotonic() - started < args.duration:
                time.sleep(0.5)
                progress.update(task, completed=int(time.monotonic() - started))
            stop.set()
            for t in threads:
                t.join(10)
            elapsed = time.monotonic() - started

            task = progress.add_task("offline decisions", total=args.offline_runs)
            counter = agents[0].counter
            who = card_identity("B0000", "C0000")
            cart = [{"product": p, "spec": s, "packs": n} for p, s, n in CART]
            counter.decide_offline(who, cart)
            offline_ms = []
            for i in range(args.offline_runs):
                t0 = time.perf_counter()
                counter.decide_offline(who, cart)
                offline_ms.append((time.perf_counter() - t0) * 1000)
                if i % 100 == 0:
                    progress.update(task, completed=i)
            progress.update(task, completed=args.offline_runs)
    finally:
        for agent in agents:
            agent.stop()
        gateway.stop()
        broker.kill()

    table = Table(title=f"authorization: {len(agents)} terminals, {elapsed:.0f} s, think time <= {args.think_ms:.0f} ms")
    for col in ("measure", "n", "p50 ms", "p99 ms", "max ms", "target", "result"):
        table.add_column(col)

    def row(label, values, target):
        if not values:
            table.add_row(label, "0", "-", "-", "-", target and f"p99 < {target:g} ms" or "", "no samples")
            return True
        p99 = percentile(values, 99)
        ok = target is None or p99 < target
        table.add_row(label, str(len(values)), f"{statistics.median(values):.1f}", f"{p99:.1f}",
                      f"{max(values):.1f}", f"p99 < {target:g} ms" if target else "",
                      ("[green]pass[/]" if ok else "[red]miss[/]") if target else "")
        return ok

    ok = row("auth round trip", rtts, RTT_TARGET_MS)
    row("checkout (round trip + ledger commit)", checkouts, None)
    ok = row("offline decision (5-line cart)", offline_ms, OFFLINE_TARGET_MS) and ok
    console.print(table)
    console.print(f"online sales {len(rtts)} ({len(rtts) / elapsed:.0f}/s), fell back offline {offline[0]}; "
                  f"files in {workdir}")
    return 0 if ok and offline[0] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
