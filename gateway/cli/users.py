"""`python -m gateway users --db PATH add|disable|enable|list`: supervision accounts.

    python -m gateway users --db gw.db add --role town --area 330113001 zhang
    (password from --password-env NAME, else asked twice on the terminal)
    python -m gateway users --db gw.db disable zhang     # sessions end at once
    python -m gateway users --db gw.db enable zhang      # may log in again
    python -m gateway users --db gw.db list              # name, role, area, state, open sessions

`add` of an existing name resets its role, area and password, enables it, and
ends every session it had (tokens issued with the old password stop working).
The password never appears on the command line, where `ps` and shell history
would keep it. These commands may run while the gateway serves the API: the
next request with a revoked token is refused.
"""

import argparse
import getpass
import os
import sys

from gateway.store import users
from gateway.store import DB_HELP, connect
from protocols.clock import wall_ms


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True, help=DB_HELP)
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="add a user (or reset an existing user's role, area and password, "
                                     "which ends its sessions)")
    add.add_argument("--role", required=True, choices=users.ROLES)
    add.add_argument("--area", required=True, help="grid area code the user is responsible for")
    add.add_argument("--password-env", help="environment variable holding the password (default: prompt)")
    add.add_argument("--display-name", help="the name the dashboard shows for the user (e.g. 张伟)")
    add.add_argument("name")
    disable = sub.add_parser("disable", help="disable a user: its sessions end at once, logins are refused")
    disable.add_argument("name")
    enable = sub.add_parser("enable", help="enable a disabled user again (it logs in anew)")
    enable.add_argument("name")
    sub.add_parser("list", help="list users: name, role, area, active|disabled, open sessions")
    args = parser.parse_args(argv)
    conn = connect(args.db)
    try:
        if args.action == "list":
            for u in users.list_users(conn, wall_ms()):
                state = "disabled" if u["disabled"] else "active"
                print(f"{u['name']}\t{u['role']}\t{u['area']}\t{state}\t{u['sessions']} sessions")
            return 0
        if args.action in ("disable", "enable"):
            try:
                user = users.set_disabled(conn, args.name, args.action == "disable")
            except users.UserError as err:
                print(f"{prog}: {err}", file=sys.stderr)
                return 2
            print(f"user {user.name}: {args.action}d")
            return 0
        if args.password_env:
            password = os.environ.get(args.password_env)
            if not password:
                print(f"{prog}: environment variable {args.password_env} is empty or unset", file=sys.stderr)
                return 2
        else:
            try:
                password = getpass.getpass("password: ")
                again = getpass.getpass("again: ")
            except EOFError:
                print(f"{prog}: no password typed twice on the terminal (for scripts: --password-env NAME)",
                      file=sys.stderr)
                return 2
            if password != again:
                print(f"{prog}: passwords differ", file=sys.stderr)
                return 2
        try:
            users.add_user(conn, args.name, args.role, args.area, password, wall_ms(), args.display_name)
        except users.UserError as err:
            print(f"{prog}: {err}", file=sys.stderr)
            return 2
        print(f"user {args.name}: {args.role} {args.area}")
        return 0
    finally:
        conn.close()
