"""Drill run inside a private mount namespace on a tiny tmpfs (see
tests/test_ledger.py): fill the disk through the ledger, then make the disk
read-only, and report what happened as JSON on stdout.

usage: ledger_on_small_disk.py MOUNTPOINT
"""

import json
import subprocess
import sys
from pathlib import Path

from firmware.ledger import Ledger, LedgerFull, LedgerReadOnly, export_lines
from tests.records_factory import KEY, sale


def main(mount: str) -> None:
    path = Path(mount) / "ledger.db"
    ledger = Ledger(path, "T1", KEY, reserve_bytes=0)  # no reserve: let SQLite itself hit the wall
    committed = []
    full_error = None
    for n in range(1, 100000):
        body = sale(n)
        body["sale_id"] = f"sale-{n}-" + "x" * 40
        try:
            committed.append(ledger.append("sale", body, 1764300000000 + n).seq)
        except LedgerFull as err:
            full_error = {"code": err.code, "text": err.text(), "detail": err.detail}
            break
    # a second attempt still fails cleanly and changes nothing
    try:
        ledger.append("sale", sale(0), 1)
        second = "accepted"
    except LedgerFull as err:
        second = err.code
    head_after_full = ledger.head
    ledger.close()
    rows_after_full = sum(1 for _ in export_lines(path))

    subprocess.run(["mount", "-o", "remount,ro", mount], check=True)
    ro_error = None
    try:
        ro = Ledger(path, "T1", KEY, reserve_bytes=0)
        try:
            ro.append("sale", sale(1), 1)
        finally:
            ro.close()
    except LedgerReadOnly as err:
        ro_error = {"code": err.code, "text": err.text()}
    except Exception as err:  # report anything unexpected instead of crashing the drill
        ro_error = {"code": "unexpected:" + type(err).__name__, "text": str(err)}
    rows_after_ro = list(export_lines(path))
    print(json.dumps({
        "committed": len(committed), "last_seq": committed[-1] if committed else 0,
        "full_error": full_error, "second": second, "head_after_full": head_after_full,
        "rows_after_full": rows_after_full, "ro_error": ro_error, "rows_after_ro": len(rows_after_ro),
        "seqs_contiguous": [json.loads(r)["seq"] for r in rows_after_ro] == list(range(1, len(rows_after_ro) + 1)),
    }))


if __name__ == "__main__":
    main(sys.argv[1])
