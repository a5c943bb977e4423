"""`python -m protocols`: inspect the wire contracts."""

import sys

from protocols.cli import dispatch

COMMANDS = {
    "vectors": ("protocols.vectors_cli", "check or regenerate the shared test vectors"),
    "conformance": ("protocols.conformance_cli", "test a terminal against the wire protocol from outside (the gateway's side)"),
    "schemas": ("protocols.schemas_cli", "write (or --check) the JSON Schemas of every message and the field reference"),
}

if __name__ == "__main__":
    sys.exit(dispatch("python -m protocols", COMMANDS))
