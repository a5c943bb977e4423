"""`python -m gateway pki --out DIR init|issue NAME|revoke NAME`: the broker's
CA and certificates (gateway/enforcement/pki.py).

    init          a new CA (ca.crt, ca.key), the broker's certificate
                  (broker.crt, broker.key) for localhost, 127.0.0.1 and each
                  --host, and an empty revocation list (crl.pem)
    issue NAME    a client certificate with CN = NAME (NAME.crt, NAME.key):
                  a terminal id, or a gateway broker user; prints the
                  terminal's [broker] keys for it
    revoke NAME   put NAME's certificate on crl.pem (then rerun
                  `terminal broker-auth --pki DIR` and restart the broker)

Every file is written 0600 and DIR is 0700. Keep ca.key off the broker.
"""

import argparse
import sys

from gateway.enforcement import pki


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the PKI directory (created 0700)")
    sub = parser.add_subparsers(dest="action", required=True)
    init = sub.add_parser("init", help="create the CA and the broker's certificate")
    init.add_argument("--host", action="append", default=[],
                      help="another name or address the broker is reached at (repeatable)")
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    issue = sub.add_parser("issue", help="issue a client certificate, CN = NAME")
    issue.add_argument("name")
    issue.add_argument("--days", type=int, default=pki.LEAF_DAYS)
    issue.add_argument("--force", action="store_true", help="replace an existing certificate for NAME")
    revoke = sub.add_parser("revoke", help="revoke NAME's certificate")
    revoke.add_argument("name")
    args = parser.parse_args(argv)
    store = pki.Pki(args.out)
    try:
        if args.action == "init":
            store.init(list(pki.DEFAULT_HOSTS) + args.host, force=args.force)
            print(f"wrote {store.ca_cert}, {store.broker_cert} and {store.crl} (CA key: {store.dir / pki.CA_KEY})")
        elif args.action == "issue":
            if not 1 <= args.days <= pki.CA_DAYS:
                parser.error(f"--days must be 1..{pki.CA_DAYS}")
            issued = store.issue(args.name, days=args.days, force=args.force)
            print(f'[broker]\nca = "{store.ca_cert.resolve()}"\ncert = "{issued.cert.resolve()}"\n'
                  f'key = "{issued.key.resolve()}"')
        else:
            count = store.revoke(args.name)
            print(f"revoked {args.name}; {store.crl} lists {count} certificate(s)")
    except (pki.PkiError, OSError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    return 0
