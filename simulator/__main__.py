"""`python -m simulator`: run simulated terminals against a broker and gateway."""

import sys

from protocols.cli import dispatch

COMMANDS = {
    "run": ("simulator.run_cli", "drive N terminal agents through the real code"),
    "demo": ("simulator.demo_cli", "the district demo: broker, gateway, simulated shops"),
    "scorecard": ("simulator.scorecard", "render a run's JSON report as tables and an HTML page"),
    "sell": ("simulator.sell_cli", "one real terminal agent whose counter sells by itself (fault drills)"),
    "pn532-field": ("simulator.pn532_field", "a PN532 emulator on a pty with a socket that puts cards on it"),
}

if __name__ == "__main__":
    sys.exit(dispatch("python -m simulator", COMMANDS))
