"""`python -m gateway terminal add|list|broker-auth`: provision terminals.

`add` prints the new terminal's credentials once, as a TOML snippet for the
terminal's config; the gateway keeps the record key (to verify MACs) and only a
hash of the broker password. A terminal id is 1-64 characters of A-Z a-z 0-9
_ - . starting with a letter or digit, and never starts with "gateway" (the
gateway's own broker users).

`broker-auth` writes the broker's whole configuration from the database:
`passwd`, `acl` and `mosquitto.conf` (gateway/enforcement/brokerconf.py); with `--pki`
(made by `python -m gateway pki`) also the TLS listeners and the certificates
they use. Run it again after `add`, then send the broker SIGHUP. `--workers N`
adds the broker users of N ingest workers sharing the load (`gateway run
--share-group NAME --username gateway-wK`, docs/deploy.md "Workers").

The record keys are stored sealed under the gateway's master key:
--master-key-file (default $GATEWAY_KEY_FILE; or $GATEWAY_MASTER_KEY), the same
one `gateway run` uses; without one, gateway-master.key next to the database
(made if missing). `rekey --to FILE` seals them all again under the key in FILE.
"""

import argparse
import os
import sys

from gateway.enforcement import brokerconf, fleet
from gateway.store import DB_HELP, KEY_FILE_ENV, Store
from protocols.clock import wall_ms


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--db", required=True, help=DB_HELP)
    parser.add_argument("--master-key-file", default=os.environ.get(KEY_FILE_ENV) or None,
                        help=f"file holding the master key the record keys are sealed under (env {KEY_FILE_ENV}; "
                             "default: gateway-master.key next to --db)")
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="register a terminal and print its credentials")
    add.add_argument("terminal")
    add.add_argument("--shop")
    add.add_argument("--key", help="record key as hex (default: random 32 bytes)")
    sub.add_parser("list", help="list registered terminals")
    rekey = sub.add_parser("rekey", help="seal every record key again under a new master key")
    rekey.add_argument("--to", required=True, help="file holding the new master key (64 hex digits)")
    auth = sub.add_parser("broker-auth", help="write Mosquitto's passwd, acl and mosquitto.conf")
    auth.add_argument("--out", required=True, help="directory for passwd, acl and mosquitto.conf (0700)")
    auth.add_argument("--gateway-password-env", default="GATEWAY_MQTT_PASSWORD",
                      help="environment variable holding the password of the gateway's broker users")
    auth.add_argument("--pki", help="PKI directory (`gateway pki --out DIR init`): adds the TLS listeners")
    auth.add_argument("--port", type=int, default=1883,
                      help="plain MQTT listener (default 1883; on 127.0.0.1 only with --pki; 0: none)")
    auth.add_argument("--tls-port", type=int, default=8883,
                      help="TLS listener, username and password (default 8883; 0: none)")
    auth.add_argument("--cert-port", type=int,
                      help="TLS listener, client certificate with CN = username (default: --tls-port + 1; 0: none)")
    auth.add_argument("--bind", help="address the listeners bind (default: every interface)")
    auth.add_argument("--data", help="the broker's persistence directory (default: OUT/data)")
    auth.add_argument("--log", help="the broker's log file (default: stderr)")
    auth.add_argument("--run-as", help="user the broker runs as (Mosquitto's `user`; default: mosquitto)")
    auth.add_argument("--workers", type=int, default=1,
                      help="gateway workers sharing the ingest (`gateway run --share-group`): broker users "
                           "gateway, gateway-w2 ... gateway-wN, each with its -supervise user (default 1)")
    args = parser.parse_args(argv)
    try:
        if args.action == "broker-auth":  # refused before the database is opened (and migrated)
            fleet.check_workers(args.workers)
        store = Store(args.db, args.master_key_file)
    except (ValueError, OSError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    try:
        if args.action == "add":
            creds = fleet.provision(store, args.terminal, args.shop, wall_ms(), args.key)
            print(f'[terminal]\nid = "{creds.terminal}"\nkey = "{creds.key_hex}"\n')
            print(f'[broker]\nusername = "{creds.terminal}"\npassword = "{creds.mqtt_password}"')
        elif args.action == "rekey":
            count = store.rekey(args.to)
            print(f"sealed {count} terminal keys under the key in {args.to}; start the gateway with it")
        elif args.action == "list":
            for t in store.terminals():
                print(f"{t['id']}\tshop={t['shop']}\tacked={t['acked_upto']}\tstate={t['state']}")
        else:
            password = os.environ.get(args.gateway_password_env)
            if not password:
                print(f"{prog}: set {args.gateway_password_env} to the gateway's broker password", file=sys.stderr)
                return 2
            cert_port = args.cert_port if args.cert_port is not None else (args.tls_port + 1 if args.tls_port else 0)
            for name, port in (("--port", args.port), ("--tls-port", args.tls_port), ("--cert-port", cert_port)):
                if not 0 <= port < 65536:
                    raise ValueError(f"{name} must be 0..65535")
            listeners = brokerconf.Listeners(args.port, args.tls_port, cert_port, args.bind)
            files = brokerconf.write(store, args.out, password, listeners, pki_dir=args.pki, data_dir=args.data,
                                     log_file=args.log, run_as=args.run_as, workers=args.workers)
            print(f"wrote {files.passwd}, {files.acl} and {files.conf}")
            for line in brokerconf.describe(files, listeners):
                print(f"listener {line}")
    except (ValueError, OSError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0
