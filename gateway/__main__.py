"""`python -m gateway`: run the gateway and its tools."""

import sys

from protocols.cli import dispatch

COMMANDS = {
    "run": ("gateway.cli.run", "run ingest against a broker and a store"),
    "supervise": ("gateway.cli.supervise", "rules, cases, API and dashboard (started by `run`)"),
    "export": ("gateway.cli.export", "export stored records as JSON lines"),
    "terminal": ("gateway.cli.terminal", "register terminals and write the broker's configuration"),
    "pki": ("gateway.cli.pki", "the broker's CA, server and client certificates"),
    "subjects": ("gateway.cli.registry", "import subjects and plots (CSV or JSON lines)"),
    "catalogue": ("gateway.cli.registry", "import the product catalogue"),
    "policy": ("gateway.cli.registry", "import the policy parameters and norms"),
    "revoke": ("gateway.cli.registry", "put subject cards on the revocation list"),
    "users": ("gateway.cli.users", "supervision accounts: district, town and village staff"),
    "grid": ("gateway.cli.grid", "import the supervision grid (towns, villages) and shops"),
    "balance": ("gateway.cli.registry", "print a subject's allowance, used and remaining as JSON"),
    "faces": ("gateway.cli.faces", "import or remove enrolled face encodings (the shops' galleries)"),
}

if __name__ == "__main__":
    sys.exit(dispatch("python -m gateway", COMMANDS))
