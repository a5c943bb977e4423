"""A gateway database as the code before sealed terminal keys made it (commit
41f4b5b): record keys in the clear in `terminals.key`, 0644. The fixture
`tests/data/gateway-clear-keys.sqlite` was made by running this module against
that commit's tree:

    git archive 41f4b5b | tar -x -C /tmp/old && cp tests/support/clear_keys_db.py /tmp/old/tests/support/
    (cd /tmp/old && umask 022 && python -m tests.support.clear_keys_db OUT.sqlite)

What it holds, so a test can prove the migration keeps every terminal and
leaves no clear key anywhere in the file: terminals T1..T4 with the keys of
`key_of` and four signed records each (ingested by the real ingest);
T2 re-provisioned once (its first key, `key_of("T2", 0)`, was overwritten in
place), and T5 provisioned then deleted (its key was in a freed cell)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

LIVE = ("T1", "T2", "T3", "T4")
RECORDS = 4


def key_of(terminal: str, generation: int = 1) -> bytes:
    return hashlib.sha256(f"clear-keys-db {terminal} {generation}".encode()).digest()


def every_clear_key() -> list[bytes]:
    """Every key the fixture ever stored in the clear, replaced and deleted ones included."""
    return [key_of(t) for t in LIVE] + [key_of("T2", 0), key_of("T5")]


def make(path: Path) -> None:
    from gateway.enforcement.fleet import provision
    from gateway.ingest import Ingest
    from gateway.store import Store
    from tests.records_factory import batch, chain

    store = Store(path)
    provision(store, "T2", "SHOP-2", 0, key_hex=key_of("T2", 0).hex())
    provision(store, "T5", "SHOP-5", 0, key_hex=key_of("T5").hex())
    for t in LIVE:
        provision(store, t, f"SHOP-{t[1:]}", 0, key_hex=key_of(t).hex())
    store.conn.execute("DELETE FROM terminals WHERE id = 'T5'")
    ingest = Ingest(store, lambda *a: None, verifiers=0, wall_ms=lambda: 1)
    ingest.start()
    try:
        for t in LIVE:
            ingest.submit_batch(f"agri/v1/t/{t}/up", t, batch(t, 0, chain(t, RECORDS, key=key_of(t))))
        assert ingest.drain(10)
    finally:
        ingest.stop()
    assert store.count_records() == RECORDS * len(LIVE) and not store.quarantined()
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()


if __name__ == "__main__":
    make(Path(sys.argv[1]))
