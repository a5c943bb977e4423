"""`python -m simulator sell --config FILE --rate R [--count N] [--seed S]`: a real
terminal agent (`firmware.agent.Agent`, the same config as `python -m firmware
run`) whose counter sells by itself (simulator/loadgen.py), for fault drills
and benchmarks that kill it as a process.

It speaks to the drill on stdout, one line per event, each written only after
the fact it reports:
    READY <terminal>             signals are handled and the agent runs
    APPROVED <seq> <sale_id>     a sale committed to the ledger: what the clerk saw approved
    REFUSED <code>               the ledger refused a sale (disk full...)
    STOPPED <head>               after SIGUSR1: the counter is closed and no record
                                 will follow; <head> is the ledger's last seq
The agent keeps uploading after STOPPED, so a drill can wait for the backlog
to drain and then compare the ledger with the gateway knowing that nothing
more is being sold. SIGTERM or SIGINT stops the agent.
"""

import argparse
import logging
import signal
import sys
import threading

from firmware.agent import Agent
from firmware.config import ConfigError, load
from firmware.ledger import LedgerError
from simulator.loadgen import LoadGenerator, LoadSettings


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the agent's TOML configuration (firmware/config.py)")
    parser.add_argument("--rate", type=float, required=True, help="sales per second")
    parser.add_argument("--count", type=int, default=0, help="stop selling after this many (0: until SIGUSR1)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic sales")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = LoadSettings(args.rate, args.count, args.seed)
        agent = Agent(load(args.config))
    except (ValueError, ConfigError, LedgerError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2

    requested: set[int] = set()
    wake = threading.Event()

    def on_signal(signum, frame):
        requested.add(signum)
        wake.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(signum, on_signal)
    agent.start()
    generator = LoadGenerator(agent, settings,
                              on_approved=lambda stored, body: _say(f"APPROVED {stored.seq} {body['sale_id']}"),
                              on_refused=lambda err: _say(f"REFUSED {err.code}"))
    seller = threading.Thread(target=generator.run, name="loadgen", daemon=True)
    seller.start()
    _say(f"READY {agent.terminal}")
    closed = False
    while not requested & {signal.SIGTERM, signal.SIGINT}:
        wake.wait()
        wake.clear()
        if signal.SIGUSR1 in requested and not closed:
            generator.stop()
            seller.join()  # a sale in progress is committed and reported before STOPPED
            closed = True
            _say(f"STOPPED {agent.ledger.head}")
    generator.stop()
    seller.join()
    agent.stop()
    return 0
