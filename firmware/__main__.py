"""`python -m firmware`: run the terminal agent and its tools."""

import sys

from protocols.cli import dispatch

COMMANDS = {
    "run": ("firmware.agent_cli", "run the terminal agent from a TOML config"),
    "ledger": ("firmware.ledger_cli", "inspect the terminal ledger (export as JSON lines)"),
    "kiosk-pin": ("firmware.clerk_pin_cli", "hash a clerk PIN for the [kiosk] table of the agent config"),
    "face": ("firmware.face.cli", "enroll, identify and verify faces against a gallery"),
}

if __name__ == "__main__":
    sys.exit(dispatch("python -m firmware", COMMANDS))
