"""`python -m firmware kiosk-pin CLERK`: the `[[kiosk.clerks]]` entry for a
clerk's PIN, with its `pin_hash` line (scrypt, a random salt: the same PIN
gives another line each time). Reads the PIN from stdin (or --pin-env NAME),
never from the command line, so it stays out of shell history and `ps`.

An old `pin_sha256` line signs nobody in (the kiosk logs which clerks have
one): replace it with the `pin_hash` line printed here."""

import argparse
import getpass
import os
import sys

from firmware.clerk_pins import pin_hash


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clerk", help="clerk id as written on records")
    parser.add_argument("--name", help="the clerk's name on screen and receipts (default: the id)")
    parser.add_argument("--pin-env", help="read the PIN from this environment variable")
    args = parser.parse_args(argv)
    if not (0 < len(args.clerk) <= 64) or '"' in args.clerk or "\\" in args.clerk:
        print(f"{prog}: a clerk id is 1-64 characters, no quotes or backslashes", file=sys.stderr)
        return 2
    name = args.name or args.clerk
    if '"' in name or "\\" in name or "\n" in name:
        print(f"{prog}: a name has no quotes, backslashes or line breaks", file=sys.stderr)
        return 2
    pin = os.environ.get(args.pin_env, "") if args.pin_env else (
        getpass.getpass("PIN: ") if sys.stdin.isatty() else sys.stdin.readline().strip())
    if not (4 <= len(pin) <= 12 and pin.isdigit()):
        print(f"{prog}: a PIN is 4-12 digits", file=sys.stderr)
        return 2
    if len(pin) < 6:
        print(f"{prog}: note: a {len(pin)}-digit PIN is found by trying them all; 6 digits or more are advised "
              "(docs/security.md, Kiosk)", file=sys.stderr)
    print(f'[[kiosk.clerks]]\nid = "{args.clerk}"\nname = "{name}"\npin_hash = "{pin_hash(args.clerk, pin)}"')
    return 0
