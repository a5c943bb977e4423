"""`python -m protocols`: inspect the wire contracts."""

import sys

from protocols.cli import dispatch

COMMANDS = {
    "vectors": ("protocols.vectors_cli", "check or regenerate the shared test vectors"),
    "schemas": ("protocols.schemas_cli", "write (or --check) the JSON Schemas of every message and the field reference"),
}

if __name__ == "__main__":
    sys.exit(dispatch("python -m protocols", COMMANDS))
