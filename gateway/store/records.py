"""The records repository: terminals and their sealed keys, the stored
records, what was quarantined and the alerts, read back for the CLI, the
tests and the judges. Ingest owns the write path of records (gateway/ingest/writer.py).

Key facts the schema keeps (gateway/store/schema.py):
- `records` has one row per (terminal, seq): a record delivered again is a no-op.
  Rows are kept in storage order (`rid`, the rowid), so ingest appends at the
  end of the table and the unique (terminal, seq) index stays small; a
  WITHOUT ROWID table keyed by (terminal, seq) made every insert a write into
  the middle of a b-tree of whole ~600-byte rows.
- The database numbers the rows (`rid`), and a row with a lower rid is never
  committed after one with a higher rid, so a follower reading `rid > cursor`
  skips nothing (`order_records`).
- `quarantine` keeps what failed verification, with the reason and the raw
  bytes: nothing that arrives is silently dropped. Within each terminal's
  hourly budget (gateway/ingest/writer.py, `QuarantineBudget`); past it,
  `quarantine_dropped` counts the rejects per terminal, hour and reason.
- `missing` holds sequence ranges a terminal's ledger no longer has (a deleted
  row): they are alerted and accounted for, so the terminal's watermark can move.
- `terminals.acked_upto` is the cumulative ack: every seq at or below it is in
  `records`, `missing`, or an accountable `quarantine` row. It is updated in
  the same transaction as the rows it covers.
"""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path

from gateway.store.connection import connect, db_errors, describe, is_postgres, sqlite_path
from gateway.store.keys import SEALED_PREFIX, KeyVault, MasterKeyError
from gateway.store.tx import lock, lock_shared, transaction

log = logging.getLogger(__name__)

RECORD_COLUMNS = "terminal, seq, type, time, digest, prev, record, received"
INSERT_CHUNK = 100  # rows per INSERT statement on SQLite (8 parameters each, far below its limit)


@functools.lru_cache(maxsize=None)
def _insert_statement(rows: int) -> str:
    return f"INSERT INTO records({RECORD_COLUMNS}) VALUES " + ",".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * rows)


def insert_records(conn, rows: list[tuple]) -> None:
    """Append new records, (terminal, seq, type, time, digest, prev, record,
    received) each, inside the caller's transaction, after `order_records`.
    Only for rows known to be new: one already stored fails the whole
    statement (the writer's `_fresh`, decided under the terminals' locks).

    SQLite: multi-row INSERTs, not executemany: sqlite3 releases the GIL
    around every step, and each time it wants the GIL back it may wait for
    the busy network thread's switch interval (the convoy effect), so one
    step per row is slow exactly when ingest is busiest. PostgreSQL: COPY,
    two to three times the rows a second of any INSERT (measured with
    100-record batches: a VALUES list of 800 placeholders spent more in
    psycopg's query conversion than on the server)."""
    if not rows:
        return
    if conn.dialect == "sqlite":
        for start in range(0, len(rows), INSERT_CHUNK):
            chunk = rows[start:start + INSERT_CHUNK]
            conn.execute(_insert_statement(len(chunk)), [value for row in chunk for value in row])
        return
    with conn.raw.cursor().copy(f"COPY records({RECORD_COLUMNS}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


_ORDER_LOCK = 0x72696473  # pg_advisory_xact_lock key of the records' order ("rids")


_ALERTS_LOCK = "alerts-writing"


def writing_alerts(conn) -> None:
    """Call in a write transaction before it inserts into `alerts`. The
    integrity sweep reads alerts by id behind a watermark; with several
    writers on PostgreSQL an alert id can become visible after a higher one
    and would be skipped for good. Writers hold this shared until they commit,
    the sweep exclusively (`wait_for_alert_writers`), as violations do."""
    lock_shared(conn, _ALERTS_LOCK)


def wait_for_alert_writers(conn) -> None:
    """Before reading alerts behind a watermark, inside the sweep's transaction."""
    lock(conn, _ALERTS_LOCK)


def order_records(conn) -> None:
    """Call in a write transaction before its first INSERT INTO records.

    Followers read `records` by rid (gateway/ingest/follow.py) and move their
    cursor past what they read, so a row that became visible below the cursor
    later would be skipped for good. On PostgreSQL the identity sequence hands
    rids out at insert, not at commit: with two writers the lower rid can
    commit last. This transaction-scoped lock, taken before the first rid is
    drawn and held until COMMIT, makes the writers draw and commit their rids
    one transaction at a time, so rid order is commit order. SQLite needs
    nothing: BEGIN IMMEDIATE already holds the one write lock, and the rowid
    is max + 1 under it.

    Taken after the terminals' row locks (`FOR UPDATE` in the writer's
    `_claim`), never before, and nothing that takes a row lock follows it, so
    two writers cannot wait for each other in a circle."""
    if conn.dialect != "sqlite":
        conn.execute("SELECT pg_advisory_xact_lock(?)", [_ORDER_LOCK])


def record_time(conn, terminal: str, seq: int) -> int | None:
    """The terminal's own time stamp on a stored record, None if not stored."""
    row = conn.execute("SELECT time FROM records WHERE terminal=? AND seq=?", [terminal, seq]).fetchone()
    return row[0] if row else None


ALERT_FIELDS = ("id", "kind", "terminal", "seq", "seq_to", "detail")


def alerts_after(conn, mark: int) -> list[dict]:
    """The alerts above `mark`, oldest first; call `wait_for_alert_writers`
    first in the same transaction."""
    rows = conn.execute("SELECT id, kind, terminal, seq, seq_to, detail FROM alerts WHERE id>? ORDER BY id",
                        [mark]).fetchall()
    return [dict(zip(ALERT_FIELDS, r)) for r in rows]


class Store:
    """Thin access to the gateway database; ingest owns the write transactions.

    `master_key_file`: see `KeyVault`. Opening checks the master key as soon
    as the database holds a sealed key (a wrong one is a MasterKeyError here,
    at start, never a wrong terminal key later), and seals keys stored in the
    clear by older versions, in place."""

    def __init__(self, path: str | Path, master_key_file: str | Path | None = None):
        """`path`: a SQLite path or a database URL (`gateway.store.connect`)."""
        self.url = path
        self.path = path if is_postgres(path) else sqlite_path(path)
        self.conn = connect(self.path)
        self.lock = threading.RLock()
        self._vault_checked = False
        try:
            self.vault = KeyVault(None if is_postgres(path) else self.path, master_key_file)
            self._open_vault()
        except BaseException:
            self.conn.close()
            raise

    def close(self) -> None:
        self.conn.close()

    def reconnect(self) -> None:
        """A fresh connection in place of one that failed (PostgreSQL restarted
        or cut off): raises while the database cannot be reached, so the
        caller retries. The broken connection goes back to its pool, which
        discards it."""
        with self.lock:
            fresh = connect(self.path)
            old, self.conn = self.conn, fresh
            try:
                old.close()
            except Exception:  # already gone with the server: nothing to hand back
                log.debug("closing the failed connection", exc_info=True)

    # -- the master key

    def _check_row(self) -> str | None:
        row = self.conn.execute("SELECT check_value FROM master_key WHERE id = 1").fetchone()
        return row[0] if row else None

    def _clear_keys(self) -> list[tuple[str, str]]:
        return self.conn.execute("SELECT id, key FROM terminals WHERE substr(key, 1, ?) != ?",
                                 [len(SEALED_PREFIX), SEALED_PREFIX]).fetchall()

    def _open_vault(self) -> None:
        clear = self.conn.execute("SELECT 1 FROM terminals WHERE substr(key, 1, ?) != ? LIMIT 1",
                                  [len(SEALED_PREFIX), SEALED_PREFIX]).fetchone()
        if clear is None and self._check_row() is None and not self.vault.configured:
            return  # nothing sealed, nothing configured: the automatic key comes with the first terminal key
        self._vault_ready(write=True)
        if clear is not None:
            self._seal_clear_keys()

    def _vault_ready(self, write: bool) -> KeyVault:
        """The vault, its key loaded and proved against the database's check
        value; `write`: store the check value if there is none yet (in the
        caller's transaction when one is open)."""
        if self._vault_checked:
            return self.vault
        value = self._check_row()
        self.vault.load(may_create=value is None)
        if value is not None:
            self.vault.check(value)
        elif write:
            with transaction(self.conn):
                value = self._check_row()  # another process may have been first
                if value is None:
                    self.conn.execute("INSERT INTO master_key(id, check_value) VALUES (1, ?)",
                                      [self.vault.check_value()])
            if value is not None:
                self.vault.check(value)
        else:
            raise MasterKeyError(f"{describe(self.path)} holds sealed terminal keys but no master key check value: "
                                 "the database was altered")
        self._vault_checked = True
        return self.vault

    def _seal_clear_keys(self) -> None:
        """Databases from before keys were sealed: every terminal keeps its key,
        sealed in place in one transaction. secure_delete zeroes what the
        update frees, VACUUM rewrites the file so no free page keeps an old
        clear key, and the checkpoint empties the WAL of the old pages."""
        self._secure_delete(True)
        try:
            with transaction(self.conn):
                rows = self._clear_keys()  # none left if another process was first
                for terminal, text in rows:
                    try:
                        key = bytes.fromhex(text)
                    except ValueError:  # could never verify anything: sealed as it was
                        log.warning("terminal key was not hex terminal=%s: sealed as it was", terminal)
                        key = text.encode()
                    self.conn.execute("UPDATE terminals SET key = ? WHERE id = ?",
                                      [self.vault.seal(terminal, key), terminal])
            if rows:
                log.warning("sealed %d terminal keys stored in the clear db=%s under %s",
                            len(rows), describe(self.path), self.vault.source())
                self._scrub()
        finally:
            self._secure_delete(False)

    def _secure_delete(self, on: bool) -> None:
        if self.conn.dialect == "sqlite":
            self.conn.execute("PRAGMA secure_delete = %s" % ("ON" if on else "OFF"))

    def _scrub(self) -> None:
        """No old clear key left in the file: VACUUM rewrites it, the
        checkpoint empties the WAL. PostgreSQL: VACUUM frees the dead row
        versions for reuse (their bytes go when the pages are rewritten)."""
        try:
            self.conn.execute("VACUUM" if self.conn.dialect == "sqlite" else "VACUUM terminals")
        except db_errors() as err:  # a full disk: the keys are sealed, old pages may keep copies
            log.warning("VACUUM after sealing the terminal keys failed db=%s: %s; run it again later",
                        describe(self.path), err)
        if self.conn.dialect == "sqlite":
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def rekey(self, new_key_file: str | Path) -> int:
        """Seal every terminal key again under the key in `new_key_file` (the
        current key must open them); returns how many. Restart the gateway
        with the new key afterwards."""
        with self.lock:
            self._vault_ready(write=True)
            new = KeyVault(self.vault.db_path, new_key_file, environ={})
            new.load(may_create=False)
            self._secure_delete(True)
            try:
                with transaction(self.conn):
                    rows = self.conn.execute("SELECT id, key FROM terminals").fetchall()
                    for terminal, text in rows:
                        key = self.vault.open(terminal, text) if text.startswith(SEALED_PREFIX) \
                            else bytes.fromhex(text)
                        self.conn.execute("UPDATE terminals SET key = ? WHERE id = ?",
                                          [new.seal(terminal, key), terminal])
                    self.conn.execute("INSERT INTO master_key(id, check_value) VALUES (1, ?) ON CONFLICT(id) "
                                      "DO UPDATE SET check_value = excluded.check_value", [new.check_value()])
                self._scrub()
            finally:
                self._secure_delete(False)
            self.vault = new
            return len(rows)

    # -- terminals

    def add_terminal(self, terminal: str, key_hex: str, shop: str | None, mqtt_hash: str | None, now_ms: int) -> None:
        key = bytes.fromhex(key_hex)
        with self.lock, transaction(self.conn):
            sealed = self._vault_ready(write=True).seal(terminal, key)
            self.conn.execute(
                "INSERT INTO terminals(id, key, shop, mqtt_hash, created) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET key=excluded.key, shop=excluded.shop, mqtt_hash=excluded.mqtt_hash",
                [terminal, sealed, shop, mqtt_hash, now_ms],
            )

    def terminal_key(self, terminal: str) -> bytes | None:
        """The terminal's record key, unsealed (callers cache it: `KeyCache`)."""
        with self.lock:
            row = self.conn.execute("SELECT key FROM terminals WHERE id = ?", [terminal]).fetchone()
            if row is None:
                return None
            if row[0].startswith(SEALED_PREFIX):
                return self._vault_ready(write=False).open(terminal, row[0])
        log.warning("terminal key stored in the clear terminal=%s: it is sealed on the next open", terminal)
        return bytes.fromhex(row[0])

    def terminals(self) -> list[dict]:
        with self.lock:
            cursor = self.conn.execute(
                "SELECT id, shop, mqtt_hash, acked_upto, head, state, last_seen FROM terminals ORDER BY id")
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row)) for row in cursor]

    # -- reading back

    def export(self, terminal: str | None = None):
        """Stored record texts, by terminal and seq."""
        sql = "SELECT record FROM records"
        args: list = []
        if terminal:
            sql += " WHERE terminal = ?"
            args.append(terminal)
        sql += " ORDER BY terminal, seq"
        for (text,) in self.conn.execute(sql, args):
            yield text

    def count_records(self) -> int:
        with self.lock:
            return self.conn.execute("SELECT count(*) FROM records").fetchone()[0]

    def alerts(self) -> list[dict]:
        with self.lock:
            cursor = self.conn.execute("SELECT id, time, kind, terminal, seq, seq_to, detail FROM alerts ORDER BY id")
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row)) for row in cursor]

    def quarantine_dropped(self) -> list[dict]:
        with self.lock:
            cursor = self.conn.execute(
                "SELECT terminal, hour, reason, count, bytes FROM quarantine_dropped ORDER BY terminal, hour, reason")
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row)) for row in cursor]

    def quarantined(self) -> list[dict]:
        with self.lock:
            cursor = self.conn.execute(
                "SELECT id, received, topic, terminal, seq, accountable, reason, detail FROM quarantine ORDER BY id")
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row)) for row in cursor]


class KeyCache:
    """Terminal record keys, read from the store and unsealed once each per
    process (an AES-GCM open is microseconds, but ingest asks for a key per
    message). A terminal registered later is found on its first message; keys
    are never changed in place (re-provisioning a terminal means restarting
    the gateway)."""

    def __init__(self, store: Store):
        self.store = store
        self._keys: dict[str, bytes] = {}

    def __call__(self, terminal: str) -> bytes | None:
        key = self._keys.get(terminal)
        if key is None:
            try:
                key = self.store.terminal_key(terminal)
            except db_errors():
                # the connection died with the server (PostgreSQL restarted):
                # once more on a fresh one; if the server is still away, the
                # caller's message fails as it would have
                self.store.reconnect()
                key = self.store.terminal_key(terminal)
            if key is not None:
                self._keys[terminal] = key
        return key
