"""`python -m protocols schemas --out DIR [--doc FILE] [--check]`: the JSON
Schema documents of every wire message (docs/schemas/) and the field tables of
docs/protocol.md, generated from protocols/schema.py shapes
(protocols/schema_export.py). `--check` writes nothing and exits 1 when the
files differ from what would be generated.
"""

import argparse
import sys

from protocols import schema_export


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="directory for the *.schema.json files (docs/schemas)")
    parser.add_argument("--doc", help="also the generated field reference in this file (docs/protocol.md)")
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    if args.check:
        wrong = schema_export.differences(args.out, args.doc)
        for path in wrong:
            print(f"{prog}: {path} differs from what the generator produces", file=sys.stderr)
        return 1 if wrong else 0
    try:
        written = schema_export.write(args.out, args.doc)
    except (OSError, ValueError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0
