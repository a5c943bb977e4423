"""`python -m hardware pn532 --port PORT COMMAND`: the reader from a shell.

The command names and outputs (version, uid, dump, read-card, issue) are a contract
with tests outside the project and with the district office's issuing scripts:
  uid        prints the UID in uppercase hex, or exits 2 with "no card"
  dump       prints pages as `NN: XXXXXXXX` (decimal page number, hex data)
  read-card  prints the verified card as JSON, or the rejection as JSON (exit 1)
  issue      signs, writes, reads back and verifies a card, prints it as JSON
Exit status: 0 done, 1 rejected card or reader failure, 2 no card or bad usage.
"""

import argparse
import datetime
import json
import logging
import os
import signal
import sys
import threading

from protocols import card as card_format
from protocols import pn532
from protocols.card import CardRejected
from hardware.pn532 import cards
from hardware.pn532.errors import ReaderError
from hardware.pn532.reader import PN532

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_NO_CARD = 0, 1, 2
EXIT_USAGE = 2  # as argparse


def main(argv=None, prog="python -m hardware pn532"):
    args = _parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s %(message)s")
    if args.command == "keygen":
        return _keygen(args)
    if args.command == "emulate":
        return _emulate(args)
    if not args.port:
        print("%s: --port is required for %s" % (prog, args.command), file=sys.stderr)
        return EXIT_USAGE
    reader = PN532(args.port, baud=args.baud, timeout=args.reader_timeout)
    try:
        return COMMANDS[args.command](reader, args)
    except CardRejected as exc:
        _print_json(_rejection(exc))
        return EXIT_FAILED
    except ReaderError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return EXIT_FAILED
    except ValueError as exc:  # e.g. a payload too large for the card
        print("error: %s" % exc, file=sys.stderr)
        return EXIT_FAILED
    finally:
        reader.close()


def _parser(prog):
    parser = argparse.ArgumentParser(prog=prog, description="PN532 NFC reader on a serial port (HSU)")
    parser.add_argument("--port", help="device path or URL: /dev/ttyS0, serial:///dev/ttyAMA0?baud=115200")
    parser.add_argument("--baud", type=int, default=None, help="baud rate (default 115200)")
    parser.add_argument("--reader-timeout", type=float, default=1.0, help="seconds per reader command")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the link to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("version", help="print the PN532 firmware version")

    p = sub.add_parser("uid", help="wait for a card and print its UID")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a card")

    p = sub.add_parser("dump", help="print raw NTAG pages")
    p.add_argument("--pages", required=True, type=_page_range, help="A-B, e.g. 0-15")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a card")

    p = sub.add_parser("read-card", help="read and verify a subject card")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a card")
    p.add_argument("--trust-key", action="append", default=[], required=True,
                   help="registry public key: 64 hex digits, or a file of them / a PEM public key")
    p.add_argument("--revoked", help="file with revoked card numbers, one a line")
    p.add_argument("--today", default=None, help="date to check expiry against (YYYY-MM-DD)")
    p.add_argument("--key", action="append", type=_mifare_key, default=[], help="MIFARE Classic key A to try")

    p = sub.add_parser("issue", help="sign and write a subject card, then verify it")
    p.add_argument("--signing-key", required=True, help="registry Ed25519 private key (PEM, or 64 hex digits)")
    p.add_argument("--subject", required=True, help="subject id")
    p.add_argument("--card-no", required=True, help="card number")
    p.add_argument("--district", required=True, help="issuing district code, e.g. 330113")
    p.add_argument("--issued", default=None, help="issue date YYYY-MM-DD (default today)")
    p.add_argument("--expires", required=True, help="expiry date YYYY-MM-DD")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a card")
    p.add_argument("--key", action="append", type=_mifare_key, default=[], help="MIFARE Classic key A to try")

    p = sub.add_parser("keygen", help="create a registry signing key (PEM) and print its public key")
    p.add_argument("--out", required=True, help="file for the private key (created 0600)")

    p = sub.add_parser("emulate", help="run a PN532 emulator on a pty and print its path")
    p.add_argument("--card", choices=("none", "ntag215", "ntag216", "classic1k"), default="ntag215")
    p.add_argument("--link", help="also make this symlink to the pty")
    return parser


def _page_range(text):
    try:
        a, b = text.split("-", 1)
        first, last = int(a, 0), int(b, 0)
    except ValueError:
        raise argparse.ArgumentTypeError("pages must be A-B, e.g. 4-15")
    if not 0 <= first <= last <= 255:
        raise argparse.ArgumentTypeError("pages must satisfy 0 <= A <= B <= 255")
    return first, last


def _mifare_key(text):
    raw = bytes.fromhex(text)
    if len(raw) != 6:
        raise argparse.ArgumentTypeError("a MIFARE key is 12 hex digits")
    return raw


def _print_json(obj):
    print(json.dumps(obj, ensure_ascii=False, sort_keys=True))


def _rejection(exc):
    return {"rejected": exc.code, "en": exc.text("en"), "zh": exc.text("zh"), "detail": exc.detail}


def _wait_card(reader, timeout):
    target = reader.wait_for_target(timeout)
    if target is None:
        print("no card", file=sys.stderr)
    return target


def _version(reader, args):
    version = reader.firmware_version()
    print("%s (IC 0x%02X, version %d.%d, support 0x%02X)"
          % (version, version.ic, version.ver, version.rev, version.support))
    return EXIT_OK


def _uid(reader, args):
    target = _wait_card(reader, args.timeout)
    if target is None:
        return EXIT_NO_CARD
    print(pn532.hexstr(target.uid))
    return EXIT_OK


def _dump(reader, args):
    target = _wait_card(reader, args.timeout)
    if target is None:
        return EXIT_NO_CARD
    if target.kind != "ntag":
        print("error: dump reads NTAG pages; this card is %s" % target.kind, file=sys.stderr)
        return EXIT_FAILED
    first, last = args.pages
    page = first
    while page <= last:
        data = reader.ntag_read(target, page)
        for i in range(4):
            if page + i <= last:
                print("%02d: %s" % (page + i, pn532.hexstr(data[4 * i:4 * i + 4])))
        page += 4
    return EXIT_OK


def _read_card(reader, args):
    trusted = card_format.trust_store(_load_public_keys(args.trust_key))
    revoked = _load_revoked(args.revoked)
    today = args.today or datetime.date.today().isoformat()
    target = _wait_card(reader, args.timeout)
    if target is None:
        return EXIT_NO_CARD
    card = cards.read_and_verify(reader, target, trusted, today, revoked, tuple(args.key) or cards.DEFAULT_KEYS)
    _print_json(card.to_dict())
    return EXIT_OK


def _issue(reader, args):
    private_key = _load_private_key(args.signing_key)
    target = _wait_card(reader, args.timeout)
    if target is None:
        return EXIT_NO_CARD
    issued = args.issued or datetime.date.today().isoformat()
    card = card_format.Card(target.uid, args.subject, args.card_no, args.district, issued, args.expires)
    try:
        payload = card_format.issue(card, private_key)
    except ValueError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return EXIT_USAGE
    keys = tuple(args.key) or cards.DEFAULT_KEYS
    target = cards.write_payload(reader, target, payload, keys)
    public = _public_bytes(private_key)
    verified = cards.read_and_verify(reader, target, card_format.trust_store([public]), issued, (), keys)
    _print_json(verified.to_dict())
    return EXIT_OK


def _keygen(args):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    print(_public_bytes(key).hex().upper())
    return EXIT_OK


def _emulate(args):
    from hardware.pn532.emulated_cards import MifareClassic1K, Ntag21x
    from hardware.pn532.emulator import PN532Emulator

    emulator = PN532Emulator(link=args.link).start()
    if args.card == "classic1k":
        emulator.put(MifareClassic1K())
    elif args.card != "none":
        emulator.put(Ntag21x(model=args.card.upper()))
    print(emulator.path, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    emulator.unplug()
    return EXIT_OK


def _load_private_key(text):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = open(text, "rb").read() if os.path.exists(text) else text.encode()
    if raw.lstrip().startswith(b"-----BEGIN"):
        key = serialization.load_pem_private_key(raw, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise SystemExit("error: %s is not an Ed25519 key" % text)
        return key
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(raw.decode().strip()))


def _public_bytes(private_key):
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _load_public_keys(values):
    keys = []
    for value in values:
        if not os.path.exists(value):
            keys.append(bytes.fromhex(value))
            continue
        raw = open(value, "rb").read()
        if raw.lstrip().startswith(b"-----BEGIN"):
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

            key = serialization.load_pem_public_key(raw)
            keys.append(key.public_bytes(Encoding.Raw, PublicFormat.Raw))
        else:
            keys.extend(bytes.fromhex(line.strip()) for line in raw.decode().splitlines() if line.strip())
    for key in keys:
        if len(key) != 32:
            raise SystemExit("error: an Ed25519 public key is 32 bytes (64 hex digits)")
    return keys


def _load_revoked(path):
    if not path:
        return frozenset()
    with open(path, encoding="utf-8") as fh:
        return frozenset(line.strip() for line in fh if line.strip() and not line.startswith("#"))


COMMANDS = {
    "version": _version,
    "uid": _uid,
    "dump": _dump,
    "read-card": _read_card,
    "issue": _issue,
}
