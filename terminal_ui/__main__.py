"""`python -m terminal_ui --config FILE`: the terminal agent with its kiosk UI on
localhost (the agent's TOML with a `[kiosk]` table, see firmware/kiosk.py).
Prints `READY <terminal> http://HOST:PORT/` once it serves; with port 0 the
system picks a free port, and PORT is the one it picked."""

import argparse
import logging
import sys
import threading

import uvicorn

from firmware.config import ConfigError
from firmware.kiosk import Kiosk, load
from firmware.ledger import LedgerError
from terminal_ui.app import create_app


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
    kiosk.start()
    server = uvicorn.Server(uvicorn.Config(create_app(kiosk), host=host or "127.0.0.1", port=int(port),
                                           log_level="warning", timeout_graceful_shutdown=2))

    def announce():
        while not server.started:
            if server.should_exit:
                return
            threading.Event().wait(0.02)
        bound = [sock.getsockname()[1] for srv in server.servers for sock in srv.sockets]
        sys.stdout.write(f"READY {config.terminal} http://{host or '127.0.0.1'}:{bound[0] if bound else port}/\n")
        sys.stdout.flush()

    threading.Thread(target=announce, daemon=True).start()
    try:
        server.run()
    finally:
        kiosk.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
