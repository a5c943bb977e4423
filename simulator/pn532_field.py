"""`python -m simulator pn532-field --link PATH [--control HOST:PORT]`: the PN532
emulator (hardware/pn532/emulator.py) on a pseudo-terminal behind the symlink
PATH, with a control socket through which whoever stands for the farmer puts
a card on the field: the MicroPython terminal's unix twin (firmware/mcu/
board_unix.py) for each sale line of `--sales -`, a test, or the simulator.

Control protocol, one command a line over TCP on 127.0.0.1, answered `OK` or
`ERR <why>`:
    PUT <card file>       the card described by that file lies on the reader
    REMOVE                the field is empty
    UNPLUG / REPLUG       the reader is pulled out / plugged in again (same path)
    FAULT <name> [times]  the next command(s) meet an emulator fault (noise,
                          mute, no_ack, bad_checksum, ...: emulator.FAULTS)

A card file is JSON (docs/mcu.md): {"type": "ntag215" | "classic1k",
"uid": "<hex>", "payload": "<the signed card payload, hex>"}, i.e. what the
district registry writes onto a blank card (`protocols.card.issue`), laid out
on the emulated card's memory exactly as `hardware.pn532.cards.write_payload`
would write it. It prints `READY <link> <control port>` once both are up.
"""

from __future__ import annotations

import argparse
import json
import signal
import socketserver
import sys
import threading
from pathlib import Path

from hardware.pn532.emulated_cards import MifareClassic1K, Ntag21x
from hardware.pn532.emulator import PN532Emulator
from protocols import card as card_format


def card_from_file(path: str | Path):
    """The emulated card a card file describes; ValueError naming the file when it is bad."""
    try:
        spec = json.loads(Path(path).read_text("utf-8"))
        kind, uid, payload = spec["type"], bytes.fromhex(spec["uid"]), bytes.fromhex(spec["payload"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"card file {path}: {err}") from None
    if kind in ("ntag213", "ntag215", "ntag216"):
        card = Ntag21x(uid, model=kind.upper())
        for page, data in card_format.ntag_pages(payload).items():
            card.memory[page * 4:page * 4 + 4] = data
        return card
    if kind == "classic1k":
        card = MifareClassic1K(uid)
        for block, data in card_format.classic_blocks(payload).items():
            card.blocks[block][:] = data
        return card
    raise ValueError(f"card file {path}: unknown type {kind!r} (ntag215, ntag216, classic1k)")


def write_card_file(path: str | Path, payload: bytes, uid: bytes, kind: str = "ntag215") -> Path:
    """A card file for a signed payload, as the registry would issue it."""
    path = Path(path)
    path.write_text(json.dumps({"type": kind, "uid": uid.hex(), "payload": payload.hex()}) + "\n", "utf-8")
    return path


class Field:
    """The emulator and what the control socket may do to it."""

    def __init__(self, link: str):
        self.emulator = PN532Emulator(link=link).start()
        self.lock = threading.Lock()

    def command(self, line: str) -> str:
        verb, _, rest = line.strip().partition(" ")
        with self.lock:
            try:
                if verb == "PUT":
                    self.emulator.put(card_from_file(rest.strip()))
                elif verb == "REMOVE":
                    self.emulator.remove()
                elif verb == "UNPLUG":
                    self.emulator.unplug()
                elif verb == "REPLUG":
                    self.emulator.replug()
                elif verb == "FAULT":
                    name, _, times = rest.strip().partition(" ")
                    self.emulator.inject(name, int(times or 1))
                else:
                    return f"ERR unknown command {verb!r}"
            except ValueError as err:
                return f"ERR {err}"
        return "OK"

    def close(self) -> None:
        self.emulator.unplug()


def serve(field: Field, port: int = 0) -> socketserver.ThreadingTCPServer:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            for raw in self.rfile:
                self.wfile.write((field.command(raw.decode("utf-8", "replace")) + "\n").encode())

    server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="pn532-field", daemon=True).start()
    return server


def main(argv=None, prog="python -m simulator pn532-field") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="PN532 emulator on a pty with a card-placing socket")
    parser.add_argument("--link", required=True, help="symlink to the emulator's pty (the terminal's reader port)")
    parser.add_argument("--control", default="127.0.0.1:0", help="HOST:PORT of the control socket (port 0: any)")
    args = parser.parse_args(argv)
    field = Field(args.link)
    server = serve(field, int(args.control.rsplit(":", 1)[1]))
    print(f"READY {args.link} {server.server_address[1]}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    server.shutdown()
    field.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
