"""`python -m firmware run --config FILE`: run the terminal agent until stopped.

With a `[load]` section the agent sells by itself and prints one line per sale
to stdout *after* it is committed:  `APPROVED <seq> <sale_id>`. Fault drills
read these lines as "what the clerk saw approved". SIGUSR1 stops selling.
`READY <terminal>` is printed once signals are handled and the agent runs.
"""

import argparse
import logging
import signal
import sys
import threading

from firmware.agent import Agent
from firmware.config import ConfigError, load
from firmware.ledger import LedgerError
from firmware.loadgen import LoadGenerator


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--config", required=True, help="TOML configuration file")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = load(args.config)
        agent = Agent(config)
    except (ConfigError, LedgerError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    agent.start()
    generator = None
    if config.load:
        def approved(stored, body):
            sys.stdout.write(f"APPROVED {stored.seq} {body['sale_id']}\n")
            sys.stdout.flush()

        def refused(err):
            sys.stdout.write(f"REFUSED {err.code}\n")
            sys.stdout.flush()

        generator = LoadGenerator(agent, config.load, approved, refused)
        # SIGUSR1 closes the counter but keeps the agent uploading, so a drill
        # can wait for the backlog to drain.
        signal.signal(signal.SIGUSR1, lambda *_: generator.stop())
        threading.Thread(target=generator.run, name="loadgen", daemon=True).start()
    sys.stdout.write(f"READY {config.terminal}\n")
    sys.stdout.flush()
    stop.wait()
    if generator:
        generator.stop()
    agent.stop()
    return 0
