"""Who in the fleet does the work that must happen once: a named role held by
one process at a time, taken over when its holder dies.

Several gateway workers share the ingest, but the quota-ledger follower, the
rules, the sweeps, the upstream sender, config push and fleet status must run
in exactly one of them. The database every worker already shares decides:

- PostgreSQL: a session-level advisory lock on the role's name, held on a
  connection of its own. The server releases it the moment that session ends:
  at once when the holder's process dies (its socket closes), and within
  about 6 s when its machine or network is lost, because the session asks the
  server to probe an idle peer every second after 3 s of silence and to give
  up after 3 unanswered probes. A standby polling every second therefore
  takes over well inside 10 s.
- SQLite (one machine): an exclusive `flock` on a file beside the database,
  which the kernel releases when the holding process dies.

Holding the role is not a licence for ever: a holder that loses its session
(the server restarted, the network broke) has lost the role, perhaps to
another worker already, and `held()` says so. The holder asks every second
and stops its work when the answer is no (gateway/cli/supervision_process.py,
gateway/enforcement/handler.py); each unit of that work commits atomically
with its cursor, under a lock a successor waits for, so the short overlap a
lost session can leave never applies anything twice
(tests/test_leader_overlap.py).

Who holds a role is read from the lock itself (`holder()`): a holder names
itself `HOST:PID` in its session's application_name, or in the lock file.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
from pathlib import Path

from gateway.store.connection import is_postgres, sqlite_path

# the fleet-wide roles: the supervision side's once-only work
# (gateway/cli/supervision_process.py) and the config push's sweep
# (gateway/enforcement/handler.py)
SUPERVISION = "supervision"
CONFIG_PUSH = "config-push"
ROLES = (SUPERVISION, CONFIG_PUSH)

# the server-side probing that bounds a lost holder's tenure (see above)
_KEEPALIVE = ("SET tcp_keepalives_idle = 3", "SET tcp_keepalives_interval = 1", "SET tcp_keepalives_count = 3")


def lock_key(role: str) -> int:
    """A stable signed 64-bit advisory-lock key for `role` (every worker, every
    Python, the same number: not `hash()`, which is salted per process)."""
    return int.from_bytes(hashlib.sha256(f"agri-quota/{role}".encode()).digest()[:8], "big", signed=True)


def me() -> str:
    """How a holder names itself to operators: the host and process, enough
    to find it with `ps` on the right machine."""
    return f"{socket.gethostname()}:{os.getpid()}"


_APP_PREFIX = "gateway leader "


def holder(url: str | Path, role: str) -> str | None:
    """Who holds `role` now (`me()` of the holder), or None: read from the
    lock itself, not from a row the holder writes, so a dead holder never
    shows as leading. PostgreSQL: the session holding the advisory lock
    names its holder in its application_name (pg_stat_activity); SQLite: the
    lock file holds the holder's name, and counts only while it is locked."""
    if is_postgres(url):
        import psycopg

        key = lock_key(role)
        with psycopg.connect(str(url), autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
                [(key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF]).fetchone()
        if row is None:
            return None
        return row[0].rpartition(" ")[2]
    path = _lock_path(url, role)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return Path(path).read_text().strip() or None
        fcntl.flock(fd, fcntl.LOCK_UN)   # nobody holds it: the name in the file is a dead holder's
        return None
    finally:
        os.close(fd)


def _lock_path(url: str | Path, role: str) -> Path:
    return Path(f"{sqlite_path(url)}.{role}.leader")


class Leadership:
    def __init__(self, url: str | Path, role: str):
        self.url, self.role = url, role
        self.name = me()
        # PostgreSQL: the session that holds the lock, or that a standby asks
        # again on (kept: a fresh connection every poll would fork a server
        # backend a second per standby and role)
        self._conn = None
        self._holding = False
        self._fd: int | None = None   # SQLite: the locked file

    def try_acquire(self) -> bool:
        """Take the role if nobody holds it; True while this process holds it."""
        if self.held():
            return True
        if is_postgres(self.url):
            return self._acquire_pg()
        return self._acquire_file()

    def held(self) -> bool:
        """Still the holder: the lock's session is alive (PostgreSQL), or the
        file lock is ours (SQLite)."""
        if self._fd is not None:
            return True
        if not self._holding:
            return False
        try:
            self._conn.execute("SELECT 1").fetchone()
            return True
        except Exception:   # any failure of the session means the lock is gone with it
            self._drop()
            return False

    def release(self) -> None:
        """Give the role up (on a clean stop: a standby takes it at once).
        Unlocked before the session closes: a close is only a message the
        server acts on when it gets to it, and a standby asking meanwhile
        would still find the role taken."""
        if self._holding:
            try:
                self._conn.execute("SELECT pg_advisory_unlock_all()")
            except Exception:
                pass   # a dead session holds nothing
        self._drop()

    def _acquire_pg(self) -> bool:
        import psycopg

        kept = self._conn is not None
        if not kept:
            try:
                # tcp_user_timeout: a `held()` sent into a dead network fails
                # within 5 s instead of waiting out TCP's retransmissions (minutes)
                self._conn = psycopg.connect(str(self.url), autocommit=True, connect_timeout=5, keepalives=1,
                                             keepalives_idle=3, keepalives_interval=1, keepalives_count=3,
                                             tcp_user_timeout=5000,
                                             application_name=f"{_APP_PREFIX}{self.role} {self.name}"[:63])
                for setting in _KEEPALIVE:
                    self._conn.execute(setting)
            except psycopg.Error:
                self._drop()
                return False
        try:
            self._holding = self._conn.execute("SELECT pg_try_advisory_lock(%s)",
                                               [lock_key(self.role)]).fetchone()[0]
        except psycopg.Error:
            self._drop()
            # the kept session died with its server: ask again at once on a
            # fresh one rather than a poll later
            return self._acquire_pg() if kept else False
        return self._holding

    def _acquire_file(self) -> bool:
        fd = os.open(_lock_path(self.url, self.role), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.name}\n".encode())   # for `holder()`
        self._fd = fd
        return True

    def _drop(self) -> None:
        self._holding = False
        if self._conn is not None:
            try:
                self._conn.close()   # ends the session, which releases the lock
            except Exception:
                pass
            self._conn = None
        if self._fd is not None:
            os.close(self._fd)       # closing the last descriptor releases the flock
            self._fd = None
