"""`python -m gateway terminal add|list|broker-auth`: provision terminals.

`add` prints the new terminal's credentials once, as a TOML snippet for the
terminal's config; the gateway keeps the record key (to verify MACs) and only a
hash of the broker password.
"""

import argparse
import os
import sys

from gateway import fleet
from gateway.store import Store
from protocols.clock import wall_ms


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--db", required=True)
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="register a terminal and print its credentials")
    add.add_argument("terminal")
    add.add_argument("--shop")
    add.add_argument("--key", help="record key as hex (default: random 32 bytes)")
    sub.add_parser("list", help="list registered terminals")
    auth = sub.add_parser("broker-auth", help="write Mosquitto passwd and acl files")
    auth.add_argument("--out", required=True, help="directory for passwd and acl")
    auth.add_argument("--gateway-password-env", default="GATEWAY_MQTT_PASSWORD")
    args = parser.parse_args(argv)
    store = Store(args.db)
    try:
        if args.action == "add":
            creds = fleet.provision(store, args.terminal, args.shop, wall_ms(), args.key)
            print(f'[terminal]\nid = "{creds.terminal}"\nkey = "{creds.key_hex}"\n')
            print(f'[broker]\nusername = "{creds.terminal}"\npassword = "{creds.mqtt_password}"')
        elif args.action == "list":
            for t in store.terminals():
                print(f"{t['id']}\tshop={t['shop']}\tacked={t['acked_upto']}\tstate={t['state']}")
        else:
            password = os.environ.get(args.gateway_password_env)
            if not password:
                print(f"{prog}: set {args.gateway_password_env} to the gateway's broker password", file=sys.stderr)
                return 2
            passwd, acl = fleet.write_broker_auth(store, args.out, password)
            print(f"wrote {passwd} and {acl}")
    except ValueError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0
