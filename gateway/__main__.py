"""`python -m gateway`: run the gateway and its tools."""

import sys

from protocols.cli import dispatch

COMMANDS = {
    "run": ("gateway.run_cli", "run ingest against a broker and a store"),
    "supervise": ("gateway.supervise_cli", "rules, cases, API and dashboard (started by `run`)"),
    "export": ("gateway.export_cli", "export stored records as JSON lines"),
    "terminal": ("gateway.terminal_cli", "register terminals and write the broker's configuration"),
    "pki": ("gateway.pki_cli", "the broker's CA, server and client certificates"),
    "subjects": ("gateway.registry_cli", "import subjects and plots (CSV or JSON lines)"),
    "catalogue": ("gateway.registry_cli", "import the product catalogue"),
    "policy": ("gateway.registry_cli", "import the policy parameters and norms"),
    "revoke": ("gateway.registry_cli", "put subject cards on the revocation list"),
    "users": ("gateway.users_cli", "supervision accounts: district, town and village staff"),
    "grid": ("gateway.grid_cli", "import the supervision grid (towns, villages) and shops"),
    "balance": ("gateway.registry_cli", "print a subject's allowance, used and remaining as JSON"),
    "faces": ("gateway.faces_cli", "import or remove enrolled face encodings (the shops' galleries)"),
}

if __name__ == "__main__":
    sys.exit(dispatch("python -m gateway", COMMANDS))
