"""`python -m gateway users add|list --db PATH`: supervision accounts.

    python -m gateway users --db gw.db add --role town --area 330113001 zhang
    (password from --password-env NAME, else asked twice on the terminal)

The password never appears on the command line, where `ps` and shell history
would keep it.
"""

import argparse
import getpass
import os
import sys

from gateway import users
from gateway.store import connect
from gateway.supervision import ensure_schema
from protocols.clock import wall_ms


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True)
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="add a user (or reset an existing user's role, area and password)")
    add.add_argument("--role", required=True, choices=users.ROLES)
    add.add_argument("--area", required=True, help="grid area code the user is responsible for")
    add.add_argument("--password-env", help="environment variable holding the password (default: prompt)")
    add.add_argument("name")
    sub.add_parser("list", help="list users")
    args = parser.parse_args(argv)
    conn = connect(args.db)
    try:
        ensure_schema(conn)
        if args.action == "list":
            for name, role, area, disabled in conn.execute("SELECT name, role, area, disabled FROM users ORDER BY name"):
                print(f"{name}\t{role}\t{area}" + ("\tdisabled" if disabled else ""))
            return 0
        if args.password_env:
            password = os.environ.get(args.password_env)
            if not password:
                print(f"{prog}: environment variable {args.password_env} is empty or unset", file=sys.stderr)
                return 2
        else:
            password = getpass.getpass("password: ")
            if password != getpass.getpass("again: "):
                print(f"{prog}: passwords differ", file=sys.stderr)
                return 2
        try:
            users.add_user(conn, args.name, args.role, args.area, password, wall_ms())
        except users.UserError as err:
            print(f"{prog}: {err}", file=sys.stderr)
            return 2
        print(f"user {args.name}: {args.role} {args.area}")
        return 0
    finally:
        conn.close()
