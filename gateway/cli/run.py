"""`python -m gateway run --broker mqtt[s]://HOST:PORT --db PATH [--ca FILE] [--http HOST:PORT
[--https-cert FILE --https-key FILE] [--trusted-proxy ADDRESS]]`: ingest, supervision rules and cases, and
(with --http) the supervision API and dashboard, over HTTPS with --https-cert/--https-key, until stopped.

Ingest runs as a pipeline of processes under this one (verifiers, then the
writer: gateway/ingest/pipeline.py); the supervision side
runs as a child, `gateway supervise`, at a lower priority, so the dashboard and
the rules never slow down storing and acknowledging records.

Each process connects as its own broker user (the broker binds client ids to
usernames): this one as --username (default `gateway`'s), the child as
USERNAME-supervise, both with the password in --password-env (`gateway
terminal broker-auth` writes both users). Over TLS (mqtts://) both check the
broker against --ca; --cert/--key present a client certificate for this
process, --supervise-cert/--supervise-key one for the child (on the broker's
certificate listener each certificate's CN is its process's username).

--https-cert/--https-key and --trusted-proxy go to the child that serves the
dashboard; they are checked here first (docs/security.md, "Deploying the
dashboard").

--master-key-file (default $GATEWAY_KEY_FILE; or $GATEWAY_MASTER_KEY) is the
key the terminals' record keys are sealed under (gateway/store/keys.py, `KeyVault`);
it is checked against the database before anything starts, and exported as
$GATEWAY_KEY_FILE to the verifier and writer processes. Without one, a key
file made next to the database is used, with a warning (docs/security.md,
"Files and keys at rest")."""

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading

from gateway.cli import supervision_process
from gateway.ingest.writer import QUARANTINE_BYTES_PER_HOUR, QUARANTINE_ROWS_PER_HOUR, QuarantineBudget
from gateway.enforcement.handler import Enforcement
from gateway.ingest.network import GatewayService, check_share_group
from gateway.store import DB_HELP, KEY_FILE_ENV, Store


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="mqtt://HOST:PORT")
    parser.add_argument("--db", required=True, help=DB_HELP)
    parser.add_argument("--username", default=os.environ.get("GATEWAY_MQTT_USERNAME") or "gateway",
                        help="broker user (env GATEWAY_MQTT_USERNAME; default gateway, the user "
                             "`gateway terminal broker-auth` writes)")
    parser.add_argument("--password-env", default="GATEWAY_MQTT_PASSWORD",
                        help="name of the environment variable holding the broker password")
    parser.add_argument("--client-id",
                        help="MQTT client id (default: the --username, so workers sharing the ingest never take "
                             "each other's session, also on a broker that does not bind ids to usernames)")
    parser.add_argument("--ca", help="CA certificate that signed the broker's (mqtts:// only)")
    parser.add_argument("--cert", help="client certificate for this process (mqtts:// only)")
    parser.add_argument("--key", help="its private key")
    parser.add_argument("--supervise-cert", help="client certificate for the supervision child (CN USERNAME-supervise)")
    parser.add_argument("--supervise-key", help="its private key")
    parser.add_argument("--verifiers", type=int, default=2,
                        help="verifier processes (default 2: verifying is the costliest stage, and with one "
                             "a two-core machine's second core idles under a flood)")
    parser.add_argument("--share-group", metavar="NAME",
                        help="one of several workers sharing the uploads and authorization requests through the "
                             "MQTT shared subscription $share/NAME/... (every worker the same NAME, each its own "
                             "--username: `gateway terminal broker-auth --workers N`); needs a database every "
                             "worker reaches (postgresql://...), see docs/deploy.md \"Workers\"")
    parser.add_argument("--quarantine-bytes-per-hour", type=int, default=QUARANTINE_BYTES_PER_HOUR,
                        help="payload bytes each terminal may add to the quarantine an hour; past that, or past "
                             "--quarantine-rows-per-hour, its rejects are only counted (quarantine_dropped) and "
                             f"one quarantine_budget_exceeded alert is raised (default {QUARANTINE_BYTES_PER_HOUR})")
    parser.add_argument("--quarantine-rows-per-hour", type=int, default=QUARANTINE_ROWS_PER_HOUR,
                        help="rows each terminal may add to the quarantine an hour "
                             f"(default {QUARANTINE_ROWS_PER_HOUR})")
    parser.add_argument("--master-key-file", default=os.environ.get(KEY_FILE_ENV) or None,
                        help=f"file holding the master key, 64 hex digits (env {KEY_FILE_ENV}; default: "
                             "gateway-master.key next to --db, made if missing)")
    parser.add_argument("--no-supervision", action="store_true",
                        help="ingest only: for extra ingest workers beside one that supervises")
    parser.add_argument("--log-level", default="INFO")
    supervision_process.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args.client_id = args.client_id or args.username   # the supervise child's ids derive from it
    try:
        # the options first: a refused command must not have opened (and
        # migrated) the database, or started anything
        supervise_args = supervision_process.child_arguments(args)
        if args.verifiers < 1:
            raise ValueError("--verifiers must be at least 1")
        if args.share_group is not None:
            check_share_group(args.share_group)
        if args.master_key_file:  # the verifier and writer processes read it from the environment
            os.environ[KEY_FILE_ENV] = os.path.abspath(args.master_key_file)
        store = Store(args.db, args.master_key_file)
        service = GatewayService(store, args.broker, lambda ingest, publish: Enforcement(store, ingest, publish),
                                 args.username, os.environ.get(args.password_env),
                                 client_id=args.client_id, share_group=args.share_group, verifiers=args.verifiers,
                                 ca=args.ca, cert=args.cert, key=args.key,
                                 budget=QuarantineBudget(args.quarantine_bytes_per_hour,
                                                         args.quarantine_rows_per_hour))
    except (OSError, ValueError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    supervisor = None
    if not args.no_supervision:
        supervisor = subprocess.Popen([sys.executable, "-m", "gateway", "supervise", "--parent", str(os.getpid()),
                                       *supervise_args])
    service.start()
    print(f"gateway: ingesting from {args.broker} into {args.db}", file=sys.stderr, flush=True)
    stop.wait()
    if supervisor:
        supervisor.terminate()
    service.stop()
    if supervisor:
        try:
            supervisor.wait(timeout=15)
        except subprocess.TimeoutExpired:
            supervisor.kill()
    store.close()
    return 0
