"""`python -m firmware kiosk-pin CLERK`: the `pin_sha256` line for a clerk's PIN
in the `[kiosk]` table. Reads the PIN from stdin (or --pin-env NAME), never from
the command line, so it stays out of shell history and `ps`."""

import argparse
import getpass
import os
import sys

from firmware.kiosk import pin_hash


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("clerk", help="clerk id as written on records")
    parser.add_argument("--pin-env", help="read the PIN from this environment variable")
    args = parser.parse_args(argv)
    pin = os.environ.get(args.pin_env, "") if args.pin_env else (
        getpass.getpass("PIN: ") if sys.stdin.isatty() else sys.stdin.readline().strip())
    if not (4 <= len(pin) <= 12 and pin.isdigit()):
        print(f"{prog}: a PIN is 4-12 digits", file=sys.stderr)
        return 2
    print(f'[[kiosk.clerks]]\nid = "{args.clerk}"\nname = "{args.clerk}"\npin_sha256 = "{pin_hash(args.clerk, pin)}"')
    return 0
