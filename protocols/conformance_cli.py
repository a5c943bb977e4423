"""`python -m protocols conformance --broker mqtt[s]://HOST:PORT --terminal ID
--key-file FILE [--ca FILE]`: test a terminal of any make against wire
protocol v1 from outside (docs/protocol.md "Conformance kit").

The kit stands in for the gateway on the broker the terminal points at: it
takes the records, acks them (or withholds, repeats, reorders and forges
acks), answers authorization requests (at once, late, with a bad MAC) and
pushes config (in chunks, repeated, with a bad MAC), and judges the terminal
by what it does next. Run it on a test bench, never against a terminal in a
shop: it pushes a fake revocation list and approves every sale.

Before running: the terminal is running, connected to the broker, and
selling (at least a sale every few seconds, through online authorization for
the auth-* scenarios); no gateway serves that terminal meanwhile (the kit
connects as the gateway's broker user, `--username`, default `gateway`).

Exit status: 0 every scenario passed; 1 at least one failed; 3 none failed
but some were not run (a restart scenario without its command); 2 bad usage
or the terminal never showed up (no record and no online status within --wait).
"""

import argparse
import json
import sys
import time

from protocols import conformance_scenarios as scenarios
from protocols import topics

EXIT_FAILED, EXIT_USAGE, EXIT_INCOMPLETE = 1, 2, 3


def _key(path):
    """The terminal's key as `gateway terminal add` prints it: 64 hex digits (32 bytes)."""
    with open(path, encoding="ascii") as f:
        text = f.read().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ValueError("%s: expected the terminal key as hex digits" % path) from None
    if len(key) < 16:
        raise ValueError("%s: a terminal key is at least 16 bytes (32 hex digits)" % path)
    return key


def parser(prog):
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--broker", required=True, help="mqtt://HOST:PORT or mqtts://HOST:PORT, the terminal's broker")
    p.add_argument("--terminal", required=True, help="the terminal id under test")
    p.add_argument("--key-file", required=True, help="file holding the terminal's key (64 hex digits)")
    p.add_argument("--ca", help="CA certificate to check the broker's (mqtts)")
    p.add_argument("--username", default="gateway", help="the kit's broker user (default: gateway)")
    p.add_argument("--password-file", help="file holding that user's broker password")
    p.add_argument("--cert", help="client certificate for the broker's certificate listener (CN = username)")
    p.add_argument("--cert-key", help="its private key")
    p.add_argument("--ack-timeout", type=float, default=5.0,
                   help="seconds the terminal waits for an ack before re-sending (protocol default 5)")
    p.add_argument("--auth-deadline-ms", type=int, default=1500,
                   help="the terminal's authorization deadline (protocol default 1500)")
    p.add_argument("--restart-broker", metavar="CMD", help="shell command that restarts the broker")
    p.add_argument("--restart-terminal", metavar="CMD", help="shell command that restarts the terminal (kill -9 "
                                                             "and start again is the honest test)")
    p.add_argument("--scenarios", help="comma-separated subset of: " + ", ".join(scenarios.NAMES))
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the terminal's first records")
    p.add_argument("--seed", type=int, help="seed of the kit's random choices (versions, ids)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON (scenario, outcome, evidence)")
    return p


def main(argv, prog):
    args = parser(prog).parse_args(argv)
    try:
        key = _key(args.key_file)
        password = None
        if args.password_file:
            with open(args.password_file, encoding="utf-8") as f:
                password = f.read().strip()
        names = scenarios.NAMES
        if args.scenarios:
            names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
            unknown = [n for n in names if n not in scenarios.NAMES]
            if unknown:
                raise ValueError("unknown scenario %s; choose from %s" % (unknown[0], ", ".join(scenarios.NAMES)))
        if not topics.is_terminal_id(args.terminal):
            raise ValueError("--terminal must be %s" % topics.TERMINAL_ID_RULE)
        if not args.ack_timeout > 0:
            raise ValueError("--ack-timeout must be positive")
        from protocols.conformance_peer import KitGateway
        kit = KitGateway(args.broker, args.terminal, key, ca=args.ca, username=args.username, password=password,
                         cert=args.cert, cert_key=args.cert_key)
    except (OSError, ValueError) as err:
        print("%s: %s" % (prog, err), file=sys.stderr)
        return EXIT_USAGE
    options = scenarios.Options(args.ack_timeout, args.auth_deadline_ms, args.restart_broker, args.restart_terminal,
                                seed=args.seed)
    kit.auth_reply = scenarios.answer_promptly(kit)
    kit.start()
    try:
        return _run(kit, options, names, args, prog)
    finally:
        kit.stop()


def _run(kit, options, names, args, prog):
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    console = Console(stderr=True)
    out = Console()
    started = time.monotonic()
    def present():
        online = any(status["state"] == "online" for _, status in kit.statuses)
        return kit.connected and (kit.batches or online)

    if not kit.wait(present, args.wait):
        if kit.violations:
            problem = kit.violations[-1][1]
        elif not kit.connected:
            problem = "could not connect to %s as %s within %.0fs (address, --ca, credentials?)" % (
                args.broker, args.username, args.wait)
        else:
            problem = "nothing from %s within %.0fs (no record, no online status): is it running and pointed at %s?" \
                % (args.terminal, args.wait, args.broker)
        print("%s: %s" % (prog, problem), file=sys.stderr)
        return EXIT_USAGE
    results = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("conformance", total=len(names))
        for name in names:
            progress.update(task, description="%s: %s" % (args.terminal, name))
            verdict = scenarios.run_one(kit, options, name)
            results.append((name, verdict))
            progress.advance(task)
    with kit.cond:
        whole = list(kit.violations)
        received = len(kit.digests)
    results.append(("whole-run", scenarios.Verdict(
        scenarios.FAIL if whole else scenarios.PASS,
        "; ".join("%s: %s" % v for v in whole[:5]) if whole else
        "%d records: MACs, chain, seqs and batches all as the protocol says" % received)))
    table = Table(title="通信协议 v1 一致性测试 wire protocol v1 conformance: terminal %s (%.0fs)"
                  % (args.terminal, time.monotonic() - started))
    table.add_column("场景 scenario", no_wrap=True)
    table.add_column("检查 what")
    table.add_column("结果 result", no_wrap=True)
    table.add_column("依据 evidence", overflow="fold")
    styles = {scenarios.PASS: "green", scenarios.FAIL: "bold red", scenarios.SKIP: "yellow"}
    for name, verdict in results:
        table.add_row(name, scenarios.ZH[name], "[%s]%s[/]" % (styles[verdict.outcome], scenarios.LABELS[verdict.outcome]),
                      verdict.detail)
    out.print(table)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"terminal": args.terminal, "results": [
                {"scenario": name, "outcome": verdict.outcome, "evidence": verdict.detail} for name, verdict in results]},
                f, ensure_ascii=False, indent=2)
    outcomes = {verdict.outcome for _, verdict in results}
    if scenarios.FAIL in outcomes:
        return EXIT_FAILED
    if scenarios.SKIP in outcomes:
        return EXIT_INCOMPLETE
    return 0
