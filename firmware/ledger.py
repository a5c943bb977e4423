"""The terminal ledger: the shop's legal sales ledger (台账) and the uplink's outbox.

Every record is signed, chained and committed here before anyone is told about
it, and it is never updated or deleted: shops must keep the ledger for at least
two years, and the gateway proves it was not rewritten by checking the chain.
The outbox is not a second copy: it is simply "ledger rows above the acknowledged
watermark", so there is nothing to keep in step and nothing to lose between two
stores.

Durability: WAL with synchronous=FULL, so a commit has reached the disk when
`append` returns and a power cut (kill -9) cannot lose a sale the clerk saw
approved. A full or read-only disk makes `append` raise `LedgerFull` or
`LedgerReadOnly` and leaves every existing row as it was; `append` also refuses
in advance when free space falls below a reserve, so the clerk gets a clear
message before SQLite ever runs out of room mid-transaction.

The acknowledged watermark is the one write that is not flushed on its own
(synchronous=NORMAL for that commit: it reaches the disk with the next sale,
or the next checkpoint): losing it to a power cut costs a re-send, which the
gateway drops as a duplicate, while an fsync per ack was a flash write on
the Pi for every batch the gateway confirmed.

At rest: the ledger holds subjects, carts and card identities, so it is 0600
from its first byte (its -wal and -shm files take its mode), in a 0700
directory when the agent creates that directory (`firmware.files.private_sqlite_file`, also
used by the config database).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from firmware.files import private_sqlite_file
from protocols import envelope, reasons

log = logging.getLogger(__name__)

reasons.register({
    "ledger_disk_full": (
        "存储空间已满，暂停销售；请联系维护人员清理或更换存储卡。已记录的台账不受影响。",
        "storage is full: sales are paused until space is freed; existing ledger rows are safe",
    ),
    "ledger_read_only": (
        "存储卡只读（可能已损坏），暂停销售；请联系维护人员。已记录的台账不受影响。",
        "storage is read-only (possibly failing): sales are paused; existing ledger rows are safe",
    ),
    "ledger_wrong_terminal": (
        "台账属于另一台终端，拒绝使用",
        "this ledger belongs to another terminal",
    ),
})

DEFAULT_RESERVE_BYTES = 8 * 1024 * 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    seq     INTEGER PRIMARY KEY,
    time    INTEGER NOT NULL,
    type    TEXT NOT NULL,
    digest  TEXT NOT NULL,
    record  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_time ON ledger(time);
CREATE TABLE IF NOT EXISTS meta (
    key     TEXT PRIMARY KEY,
    value   TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS ledger_no_update BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_no_delete BEFORE DELETE ON ledger
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
"""


class LedgerError(reasons.ReasonError):
    """The ledger cannot take a new record; nothing already stored is affected."""


class LedgerFull(LedgerError):
    def __init__(self, detail=""):
        super().__init__("ledger_disk_full", detail)


class LedgerReadOnly(LedgerError):
    def __init__(self, detail=""):
        super().__init__("ledger_read_only", detail)


@dataclass(frozen=True)
class Stored:
    seq: int
    digest: str
    text: str  # canonical JSON of the signed record, exactly as sent


def _classify(err: sqlite3.Error) -> LedgerError | None:
    message = str(err).lower()
    if "full" in message:
        return LedgerFull(str(err))
    if "readonly" in message or "read-only" in message or "disk i/o" in message:
        return LedgerReadOnly(str(err))
    return None


class Ledger:
    """Append-only, signed, chained records of one terminal, in one SQLite file.

    Thread-safe: the agent's counter flow appends while the uplink reads.
    """

    def __init__(self, path: str | os.PathLike, terminal: str, key: bytes,
                 reserve_bytes: int = DEFAULT_RESERVE_BYTES):
        self.path = Path(path)
        self.terminal = terminal
        self._key = key
        self.reserve_bytes = reserve_bytes
        self._lock = threading.RLock()
        try:
            private_sqlite_file(self.path)
        except OSError as err:  # a read-only or full card: SQLite says which below, or opens it read-only
            log.warning("ledger file not made private path=%s: %s", self.path, err)
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
        self.db = sqlite_utils.Database(conn)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(SCHEMA)
            self._load_meta()
        except sqlite3.Error as err:
            conn.close()
            raise _classify(err) or err

    # -- state kept in `meta`, written in the same transaction as the row

    def _load_meta(self) -> None:
        meta = {row["key"]: row["value"] for row in self.db.query("SELECT key, value FROM meta")}
        owner = meta.get("terminal")
        if owner is None:
            with self._transaction():
                self._set("terminal", self.terminal)
        elif owner != self.terminal:
            raise LedgerError("ledger_wrong_terminal", f"{self.path} belongs to {owner}, not {self.terminal}")
        last = self.db.execute("SELECT seq, digest FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        # next_seq survives the deletion of the newest rows, so deleting them
        # leaves a gap the gateway sees instead of a silently reused number.
        self._next_seq = max(int(meta.get("next_seq", 1)), (last[0] + 1) if last else 1)
        self._head_digest = meta.get("head", last[1] if last else envelope.GENESIS)
        self._acked = int(meta.get("acked", 0))

    def _set(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", [key, str(value)])

    def _transaction(self, durable: bool = True):
        return _Transaction(self.db.conn, durable)

    # -- writing

    def append(self, rtype: str, body: dict, time_ms: int) -> Stored:
        """Sign, chain and durably commit one record; return only after COMMIT."""
        with self._lock:
            self._check_space()
            seq = self._next_seq
            record = envelope.make_record(self._key, self.terminal, seq, self._head_digest, time_ms, rtype, body)
            digest = envelope.digest(record, checked=True)
            text = envelope.stored_text(record)
            try:
                with self._transaction():
                    self.db.execute(
                        "INSERT INTO ledger(seq, time, type, digest, record) VALUES (?, ?, ?, ?, ?)",
                        [seq, time_ms, rtype, digest, text],
                    )
                    self._set("next_seq", seq + 1)
                    self._set("head", digest)
            except sqlite3.Error as err:
                failure = _classify(err)
                if failure is None:
                    raise
                log.error("ledger refused record terminal=%s seq=%d: %s", self.terminal, seq, err)
                raise failure from err
            self._next_seq = seq + 1
            self._head_digest = digest
            return Stored(seq, digest, text)

    def _check_space(self) -> None:
        try:
            stat = os.statvfs(self.path.parent)
        except OSError:
            return
        if stat.f_bavail * stat.f_frsize < self.reserve_bytes:
            raise LedgerFull(f"less than {self.reserve_bytes // 1024} KiB free on {self.path.parent}")

    def mark_acked(self, upto: int) -> bool:
        """Move the watermark to `upto` (the gateway's end-to-end ack). Never
        backwards, never past what was written. True if it moved."""
        with self._lock:
            if upto <= self._acked:
                return False
            if upto >= self._next_seq:
                log.warning("ignoring ack beyond head terminal=%s upto=%d head=%d", self.terminal, upto, self._next_seq - 1)
                return False
            try:
                with self._transaction(durable=False):
                    self._set("acked", upto)
            except sqlite3.Error as err:
                # Losing a watermark update only means re-sending; the gateway dedups.
                log.warning("could not store watermark terminal=%s upto=%d: %s", self.terminal, upto, err)
                return False
            self._acked = upto
            return True

    # -- reading

    @property
    def head(self) -> int:
        return self._next_seq - 1

    @property
    def acked(self) -> int:
        return self._acked

    @property
    def backlog(self) -> int:
        with self._lock:
            return self._next_seq - 1 - self._acked

    def pending(self, after: int, limit: int) -> list[tuple[int, str]]:
        """Outbox: (seq, stored text) of rows above `after`, in sequence order."""
        with self._lock:
            rows = self.db.execute(
                "SELECT seq, record FROM ledger WHERE seq > ? ORDER BY seq LIMIT ?", [after, limit]
            ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def rows(self, after: int = 0):
        """Every stored record text in order (for export and inspection)."""
        cursor = self.db.conn.execute("SELECT record FROM ledger WHERE seq > ? ORDER BY seq", [after])
        for (text,) in cursor:
            yield text

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolling back on any error; `durable=False`
    commits without waiting for the disk (synchronous=NORMAL for this one)."""

    def __init__(self, conn: sqlite3.Connection, durable: bool = True):
        self.conn = conn
        self.durable = durable

    def __enter__(self):
        if not self.durable:
            self.conn.execute("PRAGMA synchronous=NORMAL")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._restore()
            raise
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                try:
                    self.conn.execute("COMMIT")
                except sqlite3.Error:
                    self._rollback()
                    raise
            else:
                self._rollback()
        finally:
            self._restore()
        return False

    def _restore(self):
        if not self.durable:
            self.conn.execute("PRAGMA synchronous=FULL")

    def _rollback(self):
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite already rolled back (e.g. after SQLITE_FULL)


def export_lines(path: str | os.PathLike):
    """Stored record texts of a ledger file, read-only, without knowing its key."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        for (text,) in conn.execute("SELECT record FROM ledger ORDER BY seq"):
            yield text
    finally:
        conn.close()
