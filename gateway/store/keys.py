"""Terminal record keys at rest (docs/security.md, "Files and keys at rest"):
sealed with AES-256-GCM under a master key kept outside the database, so a
copy of the database alone forges nothing. A check value stored in the
database proves the key at open, before any terminal key is used."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

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

    def __init__(self, db_path: str | Path | None, key_file: str | Path | None = None, environ=None):
        """`db_path`: the SQLite file (its directory holds the automatic key
        file), or None for a database on a server (PostgreSQL), which has no
        directory here: a key must be configured for it."""
        environ = os.environ if environ is None else environ
        self.db_path = Path(db_path) if db_path is not None else None
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
    def auto_file(self) -> Path | None:
        return None if self.db_path is None else self.db_path.absolute().parent / AUTO_KEY_FILE

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
        if path is None:
            raise MasterKeyError(f"a gateway database on a server needs its master key: set --master-key-file or "
                                 f"${KEY_FILE_ENV} to its file, or ${MASTER_KEY_ENV} (64 hex digits, e.g. "
                                 f"`openssl rand -hex 32`)")
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
