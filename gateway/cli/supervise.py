"""`python -m gateway supervise --db PATH --broker URL [--http HOST:PORT [--https-cert FILE --https-key FILE]]`: the
supervision side of the gateway on its own (rules, cases, fleet status,
upstream feed, API and dashboard). `gateway run` starts it as its child; run
it alone to serve the dashboard from a database another process ingests into.

Several of them on one database (or several `gateway run`) share the work:
each serves HTTP, one leads the once-only work; `--leaders` prints which
(docs/deploy.md, "Work that runs once: the leader").
"""

import argparse
import logging
import os
import signal
import sys
import threading

from gateway.cli import supervision_process
from gateway.store import DB_HELP


def _die_with_parent(parent: int, stop: threading.Event) -> None:
    """A child orphaned by a SIGKILLed `gateway run` must not live on, holding
    the HTTP port and following records beside its successor: ask Linux to
    kill us with the parent (PR_SET_PDEATHSIG), and poll as a fallback."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(0)

    def poll():
        while not stop.wait(0.5):
            if os.getppid() != parent:
                os._exit(0)
    threading.Thread(target=poll, daemon=True).start()


def _default_username() -> str | None:
    from gateway.enforcement import fleet

    if os.environ.get("GATEWAY_SUPERVISE_MQTT_USERNAME"):
        return os.environ["GATEWAY_SUPERVISE_MQTT_USERNAME"]
    base = os.environ.get("GATEWAY_MQTT_USERNAME")
    return fleet.supervise_user(base) if base else None


def _print_leaders(db: str) -> int:
    from gateway.store import leader

    for role in leader.ROLES:
        print(f"{role}\t{leader.holder(db, role) or '-'}")
    return 0


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--db", required=True, help=DB_HELP)
    parser.add_argument("--username", default=_default_username(),
                        help="broker user (env GATEWAY_SUPERVISE_MQTT_USERNAME, else $GATEWAY_MQTT_USERNAME-supervise): "
                             "never the ingest process's own, whose connection it would take")
    parser.add_argument("--password-env", default="GATEWAY_MQTT_PASSWORD")
    parser.add_argument("--client-id", default="gateway")
    parser.add_argument("--ca", help="CA certificate that signed the broker's (mqtts:// only)")
    parser.add_argument("--cert", help="client certificate (mqtts:// only)")
    parser.add_argument("--key", help="its private key")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--parent", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--nice", type=int, default=5, help="lower CPU priority than ingest (default 5)")
    parser.add_argument("--leaders", action="store_true",
                        help="print which process (HOST:PID) holds each fleet-wide role, or -, and exit")
    supervision_process.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.leaders:
        return _print_leaders(args.db)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.nice:
        os.nice(args.nice)
    try:
        runtime = supervision_process.Runtime(args, args.username, os.environ.get(args.password_env))
    except (OSError, ValueError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.parent:
        _die_with_parent(args.parent, stop)
    runtime.start()
    stop.wait()
    runtime.stop()
    return 0
