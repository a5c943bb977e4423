"""`python -m terminal_ui --config FILE`: the terminal agent with its kiosk UI on
localhost (the agent's TOML with a `[kiosk]` table, see terminal_ui/config.py).
Prints `READY <terminal> http://HOST:PORT/` once it serves; with port 0 the
system picks a free port, and PORT is the one it picked."""

import argparse
import logging
import socket
import sys
import threading

import uvicorn

from firmware.config import ConfigError
from firmware.ledger import LedgerError
from terminal_ui.app import create_app
from terminal_ui.config import load
from terminal_ui.security import is_loopback
from terminal_ui.kiosk import Kiosk


def main(argv=None, prog="python -m terminal_ui", make_kiosk=Kiosk):
    """`make_kiosk(config, settings)` builds the counter session: the shipped
    terminal's `Kiosk`; a test passes one that injects its failpoints
    (tests/support/kiosk_failpoints.py), so none is reachable from config or
    the environment."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--config", required=True, help="agent TOML with a [kiosk] table")
    parser.add_argument("--http", help="HOST:PORT to serve on (default: kiosk.http)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config, settings = load(args.config)
        kiosk = make_kiosk(config, settings)
    except (ConfigError, LedgerError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    host, _, port = (args.http or settings.http).rpartition(":")
    host = host or "127.0.0.1"
    if not is_loopback(host) or not port.isdigit():
        print(f"{prog}: --http must be a loopback HOST:PORT (127.0.0.1, ::1 or localhost): the kiosk UI is "
              f"for this terminal's own screen", file=sys.stderr)
        return 2
    # Bound here, before the app is made: with port 0 the app's list of its own
    # addresses (the Host and Origin allowlist) needs the port the system picked.
    try:
        sock = socket.create_server((host.strip("[]"), int(port)),
                                    family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as err:
        print(f"{prog}: cannot serve on {host}:{port}: {err.strerror}", file=sys.stderr)
        return 2
    bound = sock.getsockname()[1]
    kiosk.start()
    server = uvicorn.Server(uvicorn.Config(create_app(kiosk, host, bound), log_level="warning",
                                           timeout_graceful_shutdown=2))

    def announce():
        while not server.started:
            if server.should_exit:
                return
            threading.Event().wait(0.02)
        sys.stdout.write(f"READY {config.terminal} http://{host}:{bound}/\n")
        sys.stdout.flush()

    threading.Thread(target=announce, daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        kiosk.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
