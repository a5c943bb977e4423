"""Registry and configuration commands of `python -m gateway`:

    subjects import FILE --db PATH     subjects and plots, CSV (one row per plot) or JSON lines;
                                       optional `group` (household, cooperative: docs/supervision.md)
    subjects keys add|remove KEY... --db PATH
                                       trust (or stop trusting) registry keys that sign subject cards
                                       (64 hex digits each); `subjects keys list` prints them
    catalogue import FILE --db PATH    the product catalogue (docs/catalogue.md)
    policy import FILE --db PATH       the policy parameters and norms (docs/policy.md)
    revoke CARD_NO... --db PATH        add (or --undo: remove) card numbers on the revocation list
    balance SUBJECT --db PATH          allowance, used and remaining per category, as JSON

Imports may run while the gateway runs: it notices the new versions and pushes
them to the terminals (config sync). Each command's module is this one; the
sub-command is taken from `prog`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.enforcement import quota, registry

from gateway import store
from gateway.store import DB_HELP
from gateway.store import registry as registry_store
from protocols import authz, configsync
from protocols.clock import wall_ms


def _now() -> int:
    return wall_ms()


def _connect(path: str, must_exist: bool):
    """The store at `path` (a SQLite path or a postgresql:// URL); a SQLite
    file that must exist is not made by a typo."""
    if must_exist and not store.is_postgres(path) and not store.sqlite_path(path).is_file():
        raise FileNotFoundError(f"no such database: {path}")
    return store.connect(path)


def main(argv, prog):
    command = prog.split()[-1]
    handler = {"subjects": _subjects, "catalogue": _catalogue, "policy": _policy, "revoke": _revoke,
               "balance": _balance}[command]
    try:
        return handler(argv, prog)
    except (registry.RegistryError, FileNotFoundError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 1


def _import_parser(prog: str, what: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=f"import {what}")
    parser.add_argument("action", choices=["import"])
    parser.add_argument("file")
    parser.add_argument("--db", required=True, help=DB_HELP)
    return parser


def _subjects(argv, prog):
    if argv[:1] == ["keys"]:
        return _keys(argv[1:], prog + " keys")
    args = _import_parser(prog, "subjects and plots (CSV or JSON lines)").parse_args(argv)
    text = Path(args.file).read_text("utf-8")
    subjects = registry.parse_subjects(text, Path(args.file).name)
    conn = _connect(args.db, False)
    rev = registry.import_subjects(conn, subjects, _now())
    plots = sum(len(s["plots"]) for s in subjects)
    print(f"imported {len(subjects)} subjects with {plots} plots (registry revision {rev})")
    return 0


def _keys(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description="the registry keys the gateway checks subject cards "
                                     "with (authorization requests show the card: docs/protocol.md)")
    parser.add_argument("action", choices=["add", "remove", "list"])
    parser.add_argument("keys", nargs="*", help="Ed25519 public keys, 64 hex digits each")
    parser.add_argument("--db", required=True, help=DB_HELP)
    args = parser.parse_args(argv)
    if args.action != "list" and not args.keys:
        parser.error(f"{args.action} needs at least one key")
    keys = [registry.parse_key(k) for k in args.keys]
    conn = _connect(args.db, args.action != "add")
    if args.action == "add":
        count = registry.add_keys(conn, keys, _now())
    elif args.action == "remove":
        count = registry.remove_keys(conn, keys)
    else:
        for key in registry_store.trusted_keys(conn):
            print(key.hex())
        return 0
    print(f"{count} registry key(s) trusted")
    return 0


def _catalogue(argv, prog):
    args = _import_parser(prog, "the product catalogue (JSON)").parse_args(argv)
    data = registry.load_catalogue(args.file)
    conn = _connect(args.db, False)
    version = registry.set_section(conn, configsync.CATALOGUE, data, _now())
    print(f"imported catalogue with {len(data['products'])} products as version {version}")
    return 0


def _policy(argv, prog):
    args = _import_parser(prog, "the policy parameters (JSON)").parse_args(argv)
    params = registry.load_params(args.file)
    conn = _connect(args.db, False)
    version = registry.set_section(conn, configsync.PARAMS, params, _now())
    print(f"imported policy parameters with {len(params['categories'])} categories as version {version}")
    return 0


def _revoke(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description="revoke subject cards (by card number)")
    parser.add_argument("cards", nargs="+")
    parser.add_argument("--undo", action="store_true", help="take the cards off the list instead")
    parser.add_argument("--db", required=True, help=DB_HELP)
    args = parser.parse_args(argv)
    conn = _connect(args.db, True)
    cards = set(registry.revocations(conn))
    cards = cards - set(args.cards) if args.undo else cards | set(args.cards)
    version = registry.set_section(conn, configsync.REVOCATIONS, {"cards": sorted(cards)}, _now())
    print(f"revocation list has {len(cards)} cards (version {version})")
    return 0


def _balance(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description="a subject's quota: allowance, used, remaining")
    parser.add_argument("subject")
    parser.add_argument("--db", required=True, help=DB_HELP)
    parser.add_argument("--date", help="YYYY-MM-DD (default: today, China Standard Time)")
    args = parser.parse_args(argv)
    conn = _connect(args.db, True)
    date = args.date or authz.local_date(_now())
    try:
        report = quota.report(conn, args.subject, quota.ConfigCache(), date)
    except KeyError:
        print(f"{prog}: no such subject: {args.subject}", file=sys.stderr)
        return 1
    print(json.dumps({"subject": args.subject, "date": date, "categories": report}, ensure_ascii=False, indent=1))
    return 0
