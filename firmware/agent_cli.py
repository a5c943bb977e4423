"""`python -m firmware run --config FILE`: run the terminal agent until stopped
(SIGTERM or SIGINT). `READY <terminal>` is printed once signals are handled and
the agent runs.
"""

import argparse
import logging
import signal
import sys
import threading

from firmware.agent import Agent
from firmware.config import ConfigError, load
from firmware.ledger import LedgerError


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--config", required=True, help="TOML configuration file")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        agent = Agent(load(args.config))
    except (ConfigError, LedgerError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    agent.start()
    sys.stdout.write(f"READY {agent.terminal}\n")
    sys.stdout.flush()
    stop.wait()
    agent.stop()
    return 0
