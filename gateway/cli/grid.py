"""`python -m gateway grid import FILE --db PATH`: load the supervision grid
(district, towns, villages) and the shops (designated flag, opening hours,
location) from TOML; see gateway/supervision/grid.py for the format. The whole file is
checked first; a bad file changes nothing and the error names the key."""

import argparse
import sys

from gateway.supervision import grid
from gateway.store import DB_HELP, connect
from gateway.store import grid as grid_store


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--db", required=True, help=DB_HELP)
    sub = parser.add_subparsers(dest="action", required=True)
    imp = sub.add_parser("import", help="import areas and shops from a TOML file")
    imp.add_argument("file")
    sub.add_parser("list", help="list shops with their grid")
    args = parser.parse_args(argv)
    conn = connect(args.db)
    try:
        if args.action == "list":
            for s in grid_store.shops(conn):
                print(f"{s.id}\t{s.name}\t{s.village}\t{s.town}\t{'designated' if s.designated else '-'}\t{s.hours}")
            return 0
        try:
            areas, shops = grid.import_grid(conn, grid.load_file(args.file), args.file)
        except grid.GridError as err:
            print(f"{prog}: {err}", file=sys.stderr)
            return 2
        print(f"imported {areas} areas and {shops} shops")
        return 0
    finally:
        conn.close()
