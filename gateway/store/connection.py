"""One `connect(url)` for the gateway database, whichever backend holds it.

- a path, or `sqlite:///path`: SQLite, the embedded default (demo, one
  district, tests). WAL with synchronous=FULL: an ack goes out only after a
  commit that is on disk. The file is 0600 from its first byte (`files.py`).
- `postgresql://USER@HOST:PORT/DBNAME` (or `postgres://`): PostgreSQL 15+
  through psycopg 3. Connections come from one psycopg_pool pool per URL and
  process, checked before they are handed out, so a server restart costs the
  next caller a fresh connection rather than an error.

Both give the same small surface the gateway's code uses: `execute(sql,
params)` with `?` placeholders returning a cursor (`fetchone`, `fetchall`,
iteration, `rowcount`, `description`), `in_transaction`, `close`, and
`dialect` ("sqlite" or "postgresql") for the few statements that differ.
Every connection is migrated to the latest schema before it is returned.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import threading
from pathlib import Path

from gateway.store import migrations
from gateway.store.files import private_file

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
DB_HELP = ("the gateway database: a SQLite file (PATH or sqlite:///PATH, made if missing) or "
           "postgresql://USER@HOST:PORT/DBNAME")
SQLITE_SCHEME = "sqlite:///"


def db_errors() -> tuple:
    """What either backend raises for a failed statement, for callers that
    log and go on (`except store.db_errors():`). psycopg is imported only
    when a PostgreSQL database is opened: the embedded default's processes
    (ingest's verifiers and writer among them) do not pay for it."""
    import psycopg

    return (sqlite3.Error, psycopg.Error) if _pools else (sqlite3.Error,)


class StoreUrlError(ValueError):
    """A --db value that names no database this gateway can open."""


def is_postgres(url: str | Path) -> bool:
    return isinstance(url, str) and url.startswith(POSTGRES_SCHEMES)


def sqlite_path(url: str | Path) -> Path:
    """The file of a SQLite URL or path: `sqlite:///rel/path` is relative,
    `sqlite:////abs/path` absolute (SQLAlchemy's spelling)."""
    text = str(url)
    if text.startswith(SQLITE_SCHEME):
        text = text[len(SQLITE_SCHEME):]
    elif "://" in text:
        raise StoreUrlError(f"--db {text!r}: a path, sqlite:///PATH or postgresql://USER@HOST:PORT/DBNAME")
    if not text:
        raise StoreUrlError("--db: empty")
    return Path(text)


def describe(url: str | Path) -> str:
    """The URL for messages and logs, without a password."""
    if is_postgres(url):
        return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", url)
    return str(sqlite_path(url))


class SqliteConnection(sqlite3.Connection):
    """sqlite3's connection, labelled with its dialect (the C methods stay:
    the ingest path's speed is SQLite's own)."""

    dialect = "sqlite"


def connect(url: str | Path, *, migrate: bool = True):
    """The gateway database at `url`, migrated to the latest schema."""
    if is_postgres(url):
        conn = PgConnection(url)
    else:
        path = sqlite_path(url)
        private_file(path)
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30,
                               factory=SqliteConnection)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    if migrate:
        try:
            migrations.migrate(conn)
        except BaseException:
            conn.close()
            raise
    return conn


# -- PostgreSQL

_pools: dict[str, object] = {}
_pools_lock = threading.Lock()
POOL_MAX = 32


def pool(url: str):
    """This process's pool for `url` (made on first use)."""
    from psycopg_pool import ConnectionPool

    with _pools_lock:
        p = _pools.get(url)
        if p is None:
            p = ConnectionPool(url, min_size=0, max_size=POOL_MAX, open=True, check=ConnectionPool.check_connection,
                               kwargs={"autocommit": True}, configure=_configure, name="gateway-store")
            _pools[url] = p
        return p


def _configure(raw) -> None:
    import psycopg.adapt

    class NumericLoader(psycopg.adapt.Loader):
        """NUMERIC as SQLite gives it: an int when whole, else a float. The
        schema has no NUMERIC column; PostgreSQL's sum() of BIGINTs is
        NUMERIC, and a Decimal would reach the API's JSON as a string."""

        def load(self, data):
            text = bytes(data).decode()
            return float(text) if any(c in text for c in ".eEN") else int(text)

    raw.adapters.register_loader("numeric", NumericLoader)


def close_pools() -> None:
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for p in pools:
        p.close()


@functools.lru_cache(maxsize=4096)
def postgres_sql(sql: str) -> str:
    """`?` placeholders as psycopg's `%s`, `:name` ones as `%(name)s` (a
    literal % doubled); quoted text, identifiers, comments and `::` casts
    left alone."""
    out = []
    quote = None
    comment = False
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if comment:
            out.append(ch)
            comment = ch != "\n"
        elif quote:
            out.append(ch)
            if ch == quote:
                quote = None
        elif ch == "-" and sql.startswith("--", i):
            comment = True
            out.append(ch)
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        elif ch == ":" and sql.startswith("::", i):
            out.append("::")
            i += 1
        elif ch == ":" and i + 1 < n and (sql[i + 1].isalpha() or sql[i + 1] == "_"):
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            out.append(f"%({sql[i + 1:j]})s")
            i = j
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _params(params):
    return params if isinstance(params, dict) else tuple(params)


class PgConnection:
    """A pooled psycopg connection in autocommit mode (transactions are
    explicit: `gateway.store.transaction`), speaking the sqlite3 surface the
    gateway uses. Closing returns it to the pool."""

    dialect = "postgresql"

    def __init__(self, url: str):
        self.url = url
        self._pool = pool(url)
        self.raw = self._pool.getconn()

    def execute(self, sql: str, params=()):
        cur = self.raw.cursor()
        if params:
            cur.execute(postgres_sql(sql), _params(params))
        else:
            cur.execute(sql)
        return cur

    def executemany(self, sql: str, rows):
        cur = self.raw.cursor()
        cur.executemany(postgres_sql(sql), [_params(r) for r in rows])
        return cur

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        raw, self.raw = self.raw, None
        if raw is not None:
            self._pool.putconn(raw)
