"""A fresh gateway database on each backend the store supports, for tests
that must behave the same on both (issue 16): `backend_db` gives a SQLite
path under tmp_path or a fresh PostgreSQL database (`pg_url`), with a master
key in the environment (a database on a server has no directory for one)."""

from __future__ import annotations

import pytest

MASTER_KEY = "66" * 32


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_db(request, tmp_path, monkeypatch):
    from gateway import store

    monkeypatch.setenv(store.MASTER_KEY_ENV, MASTER_KEY)
    if request.param == "sqlite":
        yield str(tmp_path / "gw.db")
    else:
        yield request.getfixturevalue("pg_url")
    store.close_pools()
