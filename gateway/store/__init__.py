"""The gateway's store: the one owner of its database.

Everything that touches the schema lives here: the schema itself and its
numbered migrations (`schema.py`, `migrations.py`), one `connect(url)` for
SQLite or PostgreSQL (`connection.py`), one transaction helper
(`tx.py`), the terminal keys at rest (`keys.py`) and the repositories. No
other gateway module writes DDL or asks whether a table exists, and this
package imports no other gateway module: arrows run down only
(../shared/ARCHITECTURE.md, "The gateway's store and its processes").
"""

from gateway.store.connection import (DB_HELP, SqliteConnection, StoreUrlError, close_pools, connect, db_errors,
                                      describe, is_postgres, sqlite_path)
from gateway.store.files import SQLITE_SIDE_FILES, private_directory, private_file
from gateway.store.keys import (AUTO_KEY_FILE, KEY_FILE_ENV, MASTER_KEY_ENV, MASTER_KEY_LEN, SEALED_PREFIX, KeyVault,
                                MasterKeyError, parse_master_key)
from gateway.store.migrations import LATEST as SCHEMA_VERSION
from gateway.store.records import KeyCache, Store
from gateway.store.tx import lock, savepoint, snapshot, transaction

__all__ = [
    "AUTO_KEY_FILE", "DB_HELP", "KEY_FILE_ENV", "MASTER_KEY_ENV", "MASTER_KEY_LEN", "SCHEMA_VERSION", "SEALED_PREFIX",
    "SQLITE_SIDE_FILES", "KeyCache", "KeyVault", "MasterKeyError", "SqliteConnection", "Store", "StoreUrlError",
    "close_pools", "connect", "db_errors", "describe", "is_postgres", "lock", "parse_master_key", "private_directory", "private_file",
    "savepoint", "snapshot", "sqlite_path", "transaction",
]
