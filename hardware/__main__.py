"""`python -m hardware`: drive devices from the command line."""

import sys

from protocols.cli import dispatch

COMMANDS = {
    "pn532": ("hardware.pn532.cli", "PN532 NFC reader: version, uid, dump, read-card, issue"),
}

if __name__ == "__main__":
    sys.exit(dispatch("python -m hardware", COMMANDS))
