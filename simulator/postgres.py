"""A private PostgreSQL cluster on a free port, owned by the caller so it can
be stopped, crashed and restarted: the fault drills, the store's tests and the
benchmarks use it when no `PG_DSN` names a server to use instead.

It runs Debian's `postgresql` package binaries (initdb, postgres) from a temp
directory. The server is our own child process rather than a pg_ctl daemon, so
it dies with us (simulator/lifeline.py) and nothing is left running. PostgreSQL
refuses to run as root, so as root the cluster belongs to the `postgres` user
(created by the package) and runs as that user.

`crash()` is an immediate shutdown (SIGQUIT, what `pg_ctl stop -m immediate`
sends): no checkpoint, crash recovery on the next start, the closest thing to
pulling the plug that leaves the data directory usable.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from simulator import lifeline
from simulator.broker import free_port, wait_port

SUPERUSER = "postgres"


def bin_dir() -> Path:
    """The newest installed server's binaries (they are not on PATH on Debian)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise FileNotFoundError("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")


def _as_owner() -> dict:
    """Popen arguments that run a child as the cluster's owner when we are root."""
    if os.geteuid() != 0:
        return {}
    owner = pwd.getpwnam(SUPERUSER)
    return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}


class PostgresCluster:
    def __init__(self, port: int | None = None):
        # its own directory under /tmp: as root, the `postgres` user must reach
        # it, and a pytest or mkdtemp parent (0700, root's) would not let it
        self.dir = Path(tempfile.mkdtemp(prefix="pg-cluster-"))
        self.data = self.dir / "data"
        self.port = port or free_port()
        self.log_path = self.dir / "postgres.log"
        self.proc: subprocess.Popen | None = None
        self.bin = bin_dir()

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            owner = pwd.getpwnam(SUPERUSER)
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def init(self) -> "PostgresCluster":
        self._chown(self.dir)
        done = subprocess.run([str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                               "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **_as_owner())
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stderr.decode(errors='replace').strip()}")
        return self

    def start(self) -> "PostgresCluster":
        if not (self.data / "PG_VERSION").exists():
            self.init()
        log = open(self.log_path, "ab")
        self._chown(self.log_path)
        # fsync stays on: the drills crash this server and count on what it committed
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-h", "127.0.0.1", "-k", str(self.dir), "-c", "max_connections=200",
             "-c", "shared_buffers=64MB"],
            stdout=log, stderr=log, preexec_fn=lifeline.bind, **_as_owner())
        log.close()
        try:
            self._wait_ready()
        except TimeoutError:
            self.crash()
            raise RuntimeError(f"postgres did not start; log:\n{self.log_tail()}") from None
        return self

    def _wait_ready(self, timeout: float = 30.0) -> None:
        wait_port("127.0.0.1", self.port, timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TimeoutError("postgres exited")
            ready = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                                    "-U", SUPERUSER], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if ready.returncode == 0:
                return
            time.sleep(0.05)
        raise TimeoutError("postgres not ready")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _signal(self, sig: int, timeout: float = 30.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGQUIT)
                self.proc.wait()

    def stop(self) -> None:
        """Fast shutdown: active transactions roll back, then a checkpoint."""
        self._signal(signal.SIGINT)

    def crash(self) -> None:
        """Immediate shutdown: no checkpoint; the next start runs crash recovery."""
        self._signal(signal.SIGQUIT)

    def restart(self, crash: bool = False) -> None:
        self.crash() if crash else self.stop()
        self.start()

    def destroy(self) -> None:
        self.crash()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "PostgresCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.destroy()


def with_database(url: str, dbname: str) -> str:
    """`url` pointing at database `dbname` instead of its own."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


def create_database(server_url: str, dbname: str) -> str:
    """Create `dbname` on the server `server_url` reaches; returns its URL."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    return with_database(server_url, dbname)


def drop_database(server_url: str, dbname: str) -> None:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
