"""A terminal under test for the conformance kit: the project's real agent
(`firmware.agent.Agent`, the configuration of `python -m firmware run`) whose
counter sells by itself through `Counter.checkout`, so every sale asks the
gateway's side for an authorization first (the kit's auth-* scenarios need
requests) and records the decision like the kiosk does.

    python -m tests.support.conformance_terminal --config FILE --rate R [--broken NAME]

prints `READY <terminal>` once it runs and `SOLD <seq>` after each record.
`--broken` swaps in one of tests/support/broken_terminals.py. Test-only: the
shipped agent has no way to sell by itself (simulator/loadgen.py says why).

`TerminalUnderTest` runs it as a process the tests can kill -9 and restart.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading
from pathlib import Path

from simulator import lifeline

ROOT = Path(__file__).resolve().parents[2]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--broken")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.broken:
        from tests.support import broken_terminals
        broken_terminals.install(args.broken)
    from firmware.agent import Agent
    from firmware.config import load
    from firmware.counter import Cart, Identity

    agent = Agent(load(args.config))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    agent.start()
    print(f"READY {agent.terminal}", flush=True)
    n = 0
    while not stop.wait(1.0 / args.rate):
        n += 1
        cart = Cart()
        cart.add("PD20080001", "001", 1 + n % 3)
        outcome = agent.counter.checkout(Identity(f"S-{n % 50:05d}", "card"), cart)
        print(f"SOLD {outcome.seq}", flush=True)
    agent.stop()
    return 0


class TerminalUnderTest:
    def __init__(self, config: Path, log_path: Path, rate: float = 2.0, broken: str | None = None):
        self.config, self.log_path, self.rate, self.broken = config, log_path, rate, broken
        self.proc: subprocess.Popen | None = None
        self.sold: list[int] = []
        self._ready = threading.Event()

    def start(self, timeout: float = 60.0) -> "TerminalUnderTest":
        self._ready.clear()
        command = [sys.executable, "-m", "tests.support.conformance_terminal", "--config", str(self.config),
                   "--rate", str(self.rate)] + (["--broken", self.broken] if self.broken else [])
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, preexec_fn=lifeline.bind)
        log.close()
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"terminal under test not ready after {timeout}s; see {self.log_path}")
        return self

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            parts = line.decode().split()
            if parts[:1] == ["READY"]:
                self._ready.set()
            elif parts[:1] == ["SOLD"]:
                self.sold.append(int(parts[1]))

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        """kill -9 and start again: a power cut, not a clean stop."""
        self.kill()
        self.start()


if __name__ == "__main__":
    sys.exit(main())
