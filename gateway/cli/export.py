"""`python -m gateway export --db PATH|postgresql://...`: stored records as JSON lines, one per
record, ordered by terminal and seq (the same lines `firmware ledger export`
prints, so the two can be compared directly)."""

import argparse
import sys

from gateway import store
from gateway.store import DB_HELP, Store


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--db", required=True, help=DB_HELP)
    parser.add_argument("--terminal", help="only this terminal")
    args = parser.parse_args(argv)
    if not store.is_postgres(args.db) and not store.sqlite_path(args.db).is_file():
        print(f"{prog}: no such database: {args.db}", file=sys.stderr)
        return 1
    try:
        records = Store(args.db)
        for text in records.export(args.terminal):
            sys.stdout.write(text + "\n")
    except Exception as err:
        print(f"{prog}: cannot read {args.db}: {err}", file=sys.stderr)
        return 1
    return 0
