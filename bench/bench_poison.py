"""Other terminals' ack latency under a stream of poison messages, measured side by side in one run.

    .venv/bin/python bench/bench_poison.py [--seconds 20] [--interval 0.5] [--rate 100] [--terminals 20]
                                           [--verifiers N]

The poison is issue 15's: one uplink batch whose `records` is about 100,000
nested `[` (200 KB). It used to make msgspec raise RecursionError, which took
the verifier down and the whole ingest pipeline with it: at one such message
every 0.5 s another terminal got 3 of its 34 records acknowledged in 10 s.

On one broker and one `gateway run` (as deployed, unless --verifiers
say otherwise), real terminal agents sell at a steady rate, round robin, in
three phases of --seconds each:
1. quiet;
2. poisoned: one more terminal publishes the poison every --interval seconds;
3. quiet again (how much the machine itself drifts).
For each phase: commit → gateway ack latency over every record sold in it
(each waited for until acked, so a record acked late counts late), p50, p99,
max. Target (issue 15): the poisoned p99 within 2x of the quiet one (the mean
of the two quiet phases). Also checked: every poison message ends in the
quarantine (or, past the poisoner's hourly quarantine budget, 4 MiB by
default, in its count of rejects), and the gateway's processes are the ones
it started with.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from protocols import topics  # noqa: E402
from simulator.broker import Mosquitto  # noqa: E402
from simulator.fleet import Fleet  # noqa: E402
from simulator.processes import GatewayProcess, provision_terminals  # noqa: E402
from simulator.run_cli import percentile  # noqa: E402

console = Console()
NESTED = 100_000
POISONER = "P000"


def poison(terminal: str) -> bytes:
    return (b'{"v":1,"terminal":"%s","after":0,"records":' % terminal.encode()
            + b"[" * NESTED + b"]" * NESTED + b"}")


class Poisoner:
    """Publishes the poison as `terminal` every `interval` seconds until stopped."""

    def __init__(self, port: int, terminal: str, interval: float):
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-poison-{terminal}",
                                  clean_session=True, protocol=mqtt.MQTTv311)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.topic, self.payload, self.interval = topics.topic(terminal, topics.UP), poison(terminal), interval
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.client.publish(self.topic, self.payload, qos=1)
            self.sent += 1

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.client.loop_stop()
        self.client.disconnect()
        return self.sent


def children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def phase(fleet: Fleet, port: int, rate: float, seconds: float, interval: float | None) -> dict:
    fleet.latencies_ms.clear()
    poisoner = Poisoner(port, POISONER, interval) if interval else None
    sold = fleet.sold
    try:
        fleet.run_steady(rate, seconds)
    finally:
        sent = poisoner.stop() if poisoner else 0
    complete = fleet.wait_acked(120)
    lat = list(fleet.latencies_ms)
    return {"sold": fleet.sold - sold, "acked": len(lat), "complete": complete, "poison_sent": sent,
            "p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": max(lat, default=0.0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between poison messages")
    parser.add_argument("--rate", type=float, default=100.0, help="sales a second, over all honest terminals")
    parser.add_argument("--terminals", type=int, default=20, help="honest terminals (real agents)")
    parser.add_argument("--verifiers", type=int, help="the gateway's --verifiers (default: the gateway's own)")
    args = parser.parse_args()

    extra = ["--verifiers", str(args.verifiers)] if args.verifiers is not None else []
    work = Path(tempfile.mkdtemp(prefix="bench-poison-"))
    broker = Mosquitto(work / "broker").start()
    results: dict = {"interval_s": args.interval, "rate": args.rate,
                     "terminals": args.terminals, "seconds": args.seconds}
    try:
        db = work / "gw.db"
        creds = provision_terminals(db, [f"H{i:03d}" for i in range(args.terminals)] + [POISONER])
        gateway = GatewayProcess(db, broker.url, work / "gw.log", extra_args=extra).start()
        fleet = Fleet(work / "fleet", broker.url, creds[:-1])
        fleet.start()
        try:
            fleet.run_steady(args.rate, 2.0)  # warm up: connected, subscribed, acked once
            if not fleet.wait_acked(60):
                raise RuntimeError(f"the gateway acknowledged nothing; see {work / 'gw.log'}")
            before = children(gateway.proc.pid)
            for name, interval in (("quiet", None), ("poisoned", args.interval), ("quiet again", None)):
                console.print(f"phase: {name} ({args.seconds:.0f} s)")
                results[name] = phase(fleet, broker.port, args.rate, args.seconds, interval)
            results["gateway_alive"] = gateway.proc.poll() is None
            results["children_unchanged"] = children(gateway.proc.pid) == before
        finally:
            fleet.stop()
            gateway.stop()
        with sqlite3.connect(db) as conn:
            results["quarantined"] = dict(conn.execute(
                "SELECT reason, count(*) FROM quarantine WHERE terminal = ? GROUP BY reason", [POISONER]).fetchall())
            try:  # past the terminal's hourly quarantine budget a reject is only counted
                results["over_budget"] = dict(conn.execute(
                    "SELECT reason, sum(count) FROM quarantine_dropped WHERE terminal = ? GROUP BY reason",
                    [POISONER]).fetchall())
            except sqlite3.OperationalError:  # a gateway from before the budget
                results["over_budget"] = {}
    finally:
        broker.kill()

    quiet = (results["quiet"]["p99"] + results["quiet again"]["p99"]) / 2
    ratio = results["poisoned"]["p99"] / quiet if quiet else float("inf")
    results["p99_ratio"] = ratio
    table = Table(title=f"other terminals' commit → ack latency, poison every {args.interval} s "
                        f"({args.terminals} agents, {args.rate:.0f} sales/s)")
    for column in ("phase", "sold", "acked", "p50", "p99", "max", "poison sent"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for name in ("quiet", "poisoned", "quiet again"):
        r = results[name]
        table.add_row(name, str(r["sold"]), f"{r['acked']}{'' if r['complete'] else ' ✗'}", f"{r['p50']:.1f} ms",
                      f"{r['p99']:.1f} ms", f"{r['max']:.1f} ms", str(r["poison_sent"]))
    console.print(table)
    sent = results["poisoned"]["poison_sent"]
    console.print(f"p99 poisoned / quiet: {ratio:.2f} (≤ 2 {'✓' if ratio <= 2 else '✗'}); "
                  f"poison sent {sent}: quarantined {results['quarantined']}, counted over the terminal's "
                  f"quarantine budget {results['over_budget']}; gateway alive: "
                  f"{results['gateway_alive']}, its processes unchanged: {results['children_unchanged']}")
    console.print_json(json.dumps(results))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
