"""`python -m gateway`: run the gateway and its tools."""

import sys

from protocols.cli import dispatch

COMMANDS = {
    "run": ("gateway.run_cli", "run ingest against a broker and a store"),
    "supervise": ("gateway.supervise_cli", "rules, cases, API and dashboard (started by `run`)"),
    "export": ("gateway.export_cli", "export stored records as JSON lines"),
    "terminal": ("gateway.terminal_cli", "register terminals and write broker credentials"),
    "users": ("gateway.users_cli", "supervision accounts: district, town and village staff"),
    "grid": ("gateway.grid_cli", "import the supervision grid (towns, villages) and shops"),
}

if __name__ == "__main__":
    sys.exit(dispatch("python -m gateway", COMMANDS))
