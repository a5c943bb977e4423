"""`python -m firmware ledger export --db PATH`: the ledger as JSON lines, one
signed record a line, for inspectors and for comparing with the gateway."""

import argparse
import sys

from firmware.ledger import export_lines


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    export = sub.add_parser("export", help="write every record as one JSON line")
    export.add_argument("--db", required=True, help="the terminal's ledger database")
    args = parser.parse_args(argv)
    try:
        out = sys.stdout
        for text in export_lines(args.db):
            out.write(text + "\n")
    except Exception as err:  # sqlite3 errors, missing file: say which and fail
        print(f"{prog}: cannot read ledger {args.db}: {err}", file=sys.stderr)
        return 1
    return 0
