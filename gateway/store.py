"""The gateway's store (SQLite, the embedded default): every record once, and
everything that could not be accepted, with its reason.

Key facts the schema keeps:
- `records` has one row per (terminal, seq): a record delivered again is a no-op.
  Rows are kept in storage order (`rid`, the rowid), so ingest appends at the
  end of the table and the unique (terminal, seq) index stays small; a
  WITHOUT ROWID table keyed by (terminal, seq) made every insert a write into
  the middle of a b-tree of whole ~600-byte rows.
- `quarantine` keeps what failed verification, with the reason and the raw
  bytes: nothing that arrives is silently dropped. Within each terminal's
  hourly budget (gateway/ingest.py, `QuarantineBudget`); past it,
  `quarantine_dropped` counts the rejects per terminal, hour and reason.
- `missing` holds sequence ranges a terminal's ledger no longer has (a deleted
  row): they are alerted and accounted for, so the terminal's watermark can move.
- `terminals.acked_upto` is the cumulative ack: every seq at or below it is in
  `records`, `missing`, or an accountable `quarantine` row. It is updated in
  the same transaction as the rows it covers.

WAL with synchronous=FULL: the ack goes out only after a commit that is on disk.

At rest (docs/security.md, "Files and keys at rest"): the database holds ID
numbers, face encodings and every terminal's record key, so it is 0600 from
its first byte (SQLite gives its -wal and -shm files the main file's mode), in
a 0700 directory when the gateway creates that directory; an existing one with
looser permissions is tightened on open, with a warning. The record keys are
sealed (AES-256-GCM, `KeyVault`) under a master key kept outside the
database: a copy of the database alone forges nothing.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
from contextlib import contextmanager
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway import violations

log = logging.getLogger(__name__)

RECORDS_TABLE = """
CREATE TABLE IF NOT EXISTS records (
    rid         INTEGER PRIMARY KEY,   -- storage order, for followers (gateway/follow.py)
    terminal    TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    type        TEXT NOT NULL,
    time        INTEGER NOT NULL,
    digest      TEXT NOT NULL,
    prev        TEXT NOT NULL,
    record      TEXT NOT NULL,
    received    INTEGER NOT NULL
)"""

SCHEMA = RECORDS_TABLE + """;
CREATE UNIQUE INDEX IF NOT EXISTS records_key ON records(terminal, seq);
CREATE TABLE IF NOT EXISTS terminals (
    id          TEXT PRIMARY KEY,
    key         TEXT NOT NULL,
    shop        TEXT,
    mqtt_hash   TEXT,
    acked_upto  INTEGER NOT NULL DEFAULT 0,
    head        INTEGER,
    state       TEXT,
    last_seen   INTEGER,
    created     INTEGER
);
CREATE TABLE IF NOT EXISTS quarantine (
    id          INTEGER PRIMARY KEY,
    received    INTEGER NOT NULL,
    topic       TEXT NOT NULL,
    terminal    TEXT,
    seq         INTEGER,
    accountable INTEGER NOT NULL DEFAULT 0,
    reason      TEXT NOT NULL,
    detail      TEXT,
    payload     BLOB
);
CREATE INDEX IF NOT EXISTS quarantine_terminal ON quarantine(terminal, seq);
CREATE INDEX IF NOT EXISTS quarantine_received ON quarantine(terminal, received);
CREATE TABLE IF NOT EXISTS quarantine_dropped (  -- rejects over a terminal's hourly quarantine budget
    terminal    TEXT NOT NULL,
    hour        INTEGER NOT NULL,              -- gateway time in ms // 3600000
    reason      TEXT NOT NULL,
    count       INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    PRIMARY KEY (terminal, hour, reason)
);
CREATE TABLE IF NOT EXISTS missing (
    terminal    TEXT NOT NULL,
    seq_from    INTEGER NOT NULL,
    seq_to      INTEGER NOT NULL,
    noticed     INTEGER NOT NULL,
    PRIMARY KEY (terminal, seq_from)
);
CREATE TABLE IF NOT EXISTS followers (  -- gateway/follow.py: each follower's cursor in `rid`
    name        TEXT PRIMARY KEY,
    rid         INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS master_key (  -- KeyVault: proves the master key at open, before any terminal key is used
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    check_value TEXT NOT NULL              -- a known text sealed under the master key
);
CREATE TABLE IF NOT EXISTS alerts (
    id          INTEGER PRIMARY KEY,
    time        INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    terminal    TEXT,
    seq         INTEGER,
    seq_to      INTEGER,
    detail      TEXT,
    UNIQUE (kind, terminal, seq)
);
"""


# -- files at rest

SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_directory(directory: str | Path) -> None:
    """`directory` and any missing parent created 0700; one that exists is
    left as it is (it may be /var/lib or a home directory)."""
    directory = Path(directory)
    missing = []
    while not directory.exists() and directory.parent != directory:
        missing.append(directory)
        directory = directory.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)  # whatever the umask


def private_file(path: str | Path, side_files: tuple[str, ...] = SQLITE_SIDE_FILES) -> None:
    """Make `path` 0600 from its first byte if it is missing (an empty file is
    an empty SQLite database), in a 0700 directory if that is missing too. An
    existing file, or one of its SQLite side files, readable by group or others
    is tightened to 0600 and logged: databases made before this check were 0644."""
    path = Path(path)
    private_directory(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    for p in [path] + [Path(str(path) + suffix) for suffix in side_files]:
        try:
            mode = stat.S_IMODE(p.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            try:
                os.chmod(p, 0o600)
                log.warning("tightened file permissions path=%s from=%o to=600: it holds keys or personal data",
                            p, mode)
            except OSError as err:
                log.warning("file readable by others path=%s mode=%o, cannot tighten it: %s", p, mode, err)


def connect(path: str | Path) -> sqlite3.Connection:
    """The gateway database, created 0600 (`private_file`), migrated."""
    private_file(path)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    _migrate_records(conn)
    conn.executescript(SCHEMA)
    violations.ensure_schema(conn)
    return conn


def _migrate_records(conn: sqlite3.Connection) -> None:
    """Databases from before rid became the rowid keep every row: they are
    copied, in storage order, into the current layout once, under the write
    lock (the other gateway processes open the store after the first)."""
    def old_layout() -> bool:
        row = conn.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='records'").fetchone()
        return bool(row) and "WITHOUT ROWID" in row[0].upper()

    if not old_layout():
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if old_layout():
            conn.execute("ALTER TABLE records RENAME TO records_old")
            conn.execute("DROP INDEX IF EXISTS records_rid")
            conn.execute(RECORDS_TABLE)
            conn.execute("INSERT INTO records(rid, terminal, seq, type, time, digest, prev, record, received) "
                         "SELECT rid, terminal, seq, type, time, digest, prev, record, received "
                         "FROM records_old ORDER BY rid")
            conn.execute("DROP TABLE records_old")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


@contextmanager
def _immediate(conn: sqlite3.Connection):
    """BEGIN IMMEDIATE ... COMMIT, or inside the caller's transaction if one is open."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


# -- terminal keys at rest

KEY_FILE_ENV = "GATEWAY_KEY_FILE"       # path of a file holding the master key (64 hex digits)
MASTER_KEY_ENV = "GATEWAY_MASTER_KEY"   # or the master key itself, 64 hex digits
AUTO_KEY_FILE = "gateway-master.key"    # made next to the database when neither is set (demo, tests)
MASTER_KEY_LEN = 32
SEALED_PREFIX = "aes256gcm:"            # terminals.key: prefix, then hex(nonce + ciphertext + tag)
_NONCE_LEN = 12
_CHECK_TEXT = b"agri-quota gateway master key"
_CHECK_AAD = b"master-key-check"


class MasterKeyError(ValueError):
    """No usable master key, or not the one this database's terminal keys are sealed under."""


def parse_master_key(data: str | bytes, source: str) -> bytes:
    """64 hex digits (white space around them is fine), as `openssl rand -hex 32` writes."""
    if isinstance(data, bytes):
        data = data.decode("ascii", "replace")
    try:
        key = bytes.fromhex(data.strip())
    except ValueError:
        key = b""
    if len(key) != MASTER_KEY_LEN:
        raise MasterKeyError(f"{source}: a master key is 64 hex digits (32 bytes, e.g. `openssl rand -hex 32`)")
    return key


def _terminal_aad(terminal: str) -> bytes:
    """Binds a sealed key to its row: a sealed key moved to another terminal does not open."""
    return b"terminal-key\x00" + terminal.encode()


class KeyVault:
    """Seals terminal record keys under the gateway's master key (AES-256-GCM).

    Where the master key comes from, in this order: `key_file` (`--master-key-file`),
    else $GATEWAY_KEY_FILE (a file holding 64 hex digits), else
    $GATEWAY_MASTER_KEY (the 64 hex digits themselves); setting a file and the
    variable both is refused. Child processes (verifiers, the writer) find it
    the same way: they inherit the environment (`gateway run` exports
    --master-key-file as $GATEWAY_KEY_FILE). With none of them, the key is
    `gateway-master.key` next to the database, made 0600 with the first
    terminal key and announced with a warning at every load: fine for the demo
    and the tests, but then whoever copies that directory has both, so
    production sets a key kept elsewhere.

    The key is loaded once; nothing here logs it or a terminal key."""

    def __init__(self, db_path: str | Path, key_file: str | Path | None = None, environ=None):
        environ = os.environ if environ is None else environ
        self.db_path = Path(db_path)
        file = key_file or environ.get(KEY_FILE_ENV) or None
        self._hex = environ.get(MASTER_KEY_ENV) or None
        if file and self._hex:
            raise MasterKeyError(f"a master key file ({file}) and ${MASTER_KEY_ENV} are both set: set only one")
        self.file = Path(file) if file else None
        self._aead: AESGCM | None = None

    @property
    def configured(self) -> bool:
        return self.file is not None or self._hex is not None

    @property
    def auto_file(self) -> Path:
        return self.db_path.absolute().parent / AUTO_KEY_FILE

    def source(self) -> str:
        """Where the key comes from, for messages (never the key)."""
        if self._hex is not None:
            return f"${MASTER_KEY_ENV}"
        if self.file is not None:
            return f"master key file {self.file}"
        return f"the automatic master key file {self.auto_file}"

    def load(self, may_create: bool) -> AESGCM:
        """The cipher; `may_create`: the automatic key file may be made (only
        while the database holds no sealed key: a missing key for sealed keys
        is an error, never a fresh key)."""
        if self._aead is None:
            if self._hex is not None:
                key = parse_master_key(self._hex, f"${MASTER_KEY_ENV}")
            elif self.file is not None:
                key = self._read(self.file)
            else:
                key = self._auto(may_create)
            self._aead = AESGCM(key)
        return self._aead

    def _read(self, path: Path) -> bytes:
        try:
            data = path.read_bytes()
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            raise MasterKeyError(f"master key file {path}: no such file (make one with "
                                 f"`(umask 077; openssl rand -hex 32 > {path})`)") from None
        except OSError as err:
            raise MasterKeyError(f"master key file {path}: {err.strerror}") from None
        if mode & 0o077:
            log.warning("master key file readable by others path=%s mode=%o: chmod 600 it", path, mode)
        return parse_master_key(data, f"master key file {path}")

    def _auto(self, may_create: bool) -> bytes:
        path = self.auto_file
        if not path.exists():
            if not may_create:
                raise MasterKeyError(
                    f"the terminal keys in {self.db_path} are sealed under a master key, and none is given: "
                    f"set --master-key-file or ${KEY_FILE_ENV} to its file (without either, {AUTO_KEY_FILE} "
                    f"next to the database), or ${MASTER_KEY_ENV}")
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, os.urandom(MASTER_KEY_LEN).hex().encode() + b"\n")
                os.fsync(fd)
                os.close(fd)
                try:
                    os.link(tmp, path)  # never replaces a key another process made meanwhile
                except FileExistsError:
                    pass
            finally:
                tmp.unlink(missing_ok=True)
        key = self._read(path)
        log.warning("NO MASTER KEY CONFIGURED: terminal record keys are sealed under %s, next to the database; "
                    "anyone who copies that directory has both. Set --master-key-file or $%s to a key kept "
                    "elsewhere (docs/security.md, \"Files and keys at rest\")", path, KEY_FILE_ENV)
        return key

    # -- sealing (the cipher must be loaded)

    def seal(self, terminal: str, key: bytes) -> str:
        nonce = os.urandom(_NONCE_LEN)
        return SEALED_PREFIX + (nonce + self._aead.encrypt(nonce, bytes(key), _terminal_aad(terminal))).hex()

    def open(self, terminal: str, sealed: str) -> bytes:
        try:
            blob = bytes.fromhex(sealed[len(SEALED_PREFIX):])
            return self._aead.decrypt(blob[:_NONCE_LEN], blob[_NONCE_LEN:], _terminal_aad(terminal))
        except (ValueError, InvalidTag):
            raise MasterKeyError(f"the sealed record key of terminal {terminal!r} does not open under "
                                 f"{self.source()}: the row was altered or sealed under another key") from None

    def check_value(self) -> str:
        nonce = os.urandom(_NONCE_LEN)
        return (nonce + self._aead.encrypt(nonce, _CHECK_TEXT, _CHECK_AAD)).hex()

    def check(self, value: str) -> None:
        """MasterKeyError unless `value` (`check_value`) was sealed under this key."""
        try:
            blob = bytes.fromhex(value)
            ok = self._aead.decrypt(blob[:_NONCE_LEN], blob[_NONCE_LEN:], _CHECK_AAD) == _CHECK_TEXT
        except (ValueError, InvalidTag):
            ok = False
        if not ok:
            raise MasterKeyError(f"{self.source()} is not the master key the terminal keys in {self.db_path} "
                                 "are sealed under: give the right key (or `gateway terminal rekey` with the "
                                 "old one to change it)")


class Store:
    """Thin access to the gateway database; ingest owns the write transactions.

    `master_key_file`: see `KeyVault`. Opening checks the master key as soon
    as the database holds a sealed key (a wrong one is a MasterKeyError here,
    at start, never a wrong terminal key later), and seals keys stored in the
    clear by older versions, in place."""

    def __init__(self, path: str | Path, master_key_file: str | Path | None = None):
        self.path = Path(path)
        self.conn = connect(self.path)
        self.lock = threading.RLock()
        self._vault_checked = False
        try:
            self.vault = KeyVault(self.path, master_key_file)
            self._open_vault()
        except BaseException:
            self.conn.close()
            raise

    def close(self) -> None:
        self.conn.close()

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
            with _immediate(self.conn):
                value = self._check_row()  # another process may have been first
                if value is None:
                    self.conn.execute("INSERT INTO master_key(id, check_value) VALUES (1, ?)",
                                      [self.vault.check_value()])
            if value is not None:
                self.vault.check(value)
        else:
            raise MasterKeyError(f"{self.path} holds sealed terminal keys but no master key check value: "
                                 "the database was altered")
        self._vault_checked = True
        return self.vault

    def _seal_clear_keys(self) -> None:
        """Databases from before keys were sealed: every terminal keeps its key,
        sealed in place in one transaction. secure_delete zeroes what the
        update frees, VACUUM rewrites the file so no free page keeps an old
        clear key, and the checkpoint empties the WAL of the old pages."""
        self.conn.execute("PRAGMA secure_delete = ON")
        try:
            with _immediate(self.conn):
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
                            len(rows), self.path, self.vault.source())
                self._scrub()
        finally:
            self.conn.execute("PRAGMA secure_delete = OFF")

    def _scrub(self) -> None:
        try:
            self.conn.execute("VACUUM")
        except sqlite3.Error as err:  # a full disk: the keys are sealed, old free pages may keep copies
            log.warning("VACUUM after sealing the terminal keys failed db=%s: %s; run it again later", self.path, err)
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def rekey(self, new_key_file: str | Path) -> int:
        """Seal every terminal key again under the key in `new_key_file` (the
        current key must open them); returns how many. Restart the gateway
        with the new key afterwards."""
        with self.lock:
            self._vault_ready(write=True)
            new = KeyVault(self.path, new_key_file, environ={})
            new.load(may_create=False)
            self.conn.execute("PRAGMA secure_delete = ON")
            try:
                with _immediate(self.conn):
                    rows = self.conn.execute("SELECT id, key FROM terminals").fetchall()
                    for terminal, text in rows:
                        key = self.vault.open(terminal, text) if text.startswith(SEALED_PREFIX) \
                            else bytes.fromhex(text)
                        self.conn.execute("UPDATE terminals SET key = ? WHERE id = ?",
                                          [new.seal(terminal, key), terminal])
                    self.conn.execute("INSERT OR REPLACE INTO master_key(id, check_value) VALUES (1, ?)",
                                      [new.check_value()])
                self._scrub()
            finally:
                self.conn.execute("PRAGMA secure_delete = OFF")
            self.vault = new
            return len(rows)

    # -- terminals

    def add_terminal(self, terminal: str, key_hex: str, shop: str | None, mqtt_hash: str | None, now_ms: int) -> None:
        key = bytes.fromhex(key_hex)
        with self.lock, _immediate(self.conn):
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
            key = self.store.terminal_key(terminal)
            if key is not None:
                self._keys[terminal] = key
        return key
