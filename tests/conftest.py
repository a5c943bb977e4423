"""Shared fixtures: real processes on free ports, always cleaned up."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.support import micropython as _micropython


@pytest.fixture(scope="session")
def micropython():
    """Run code under real MicroPython; fails (never skips) when Node is missing,
    because the MicroPython guarantee is part of what the suite proves."""
    if not _micropython.available():
        pytest.fail("MicroPython runner missing: run scripts/test.sh to install it")
    return _micropython.run


@pytest.fixture
def in_ci() -> bool:
    return os.environ.get("CI") == "true"


@pytest.fixture(scope="session")
def pg_server_url():
    """A PostgreSQL server to make databases on: `PG_DSN` when set, else a
    private cluster (simulator/postgres.py) that lives for the session."""
    from simulator import postgres

    if os.environ.get("PG_DSN"):
        yield os.environ["PG_DSN"]
        return
    cluster = postgres.PostgresCluster().start()
    try:
        yield cluster.url()
    finally:
        cluster.destroy()


@pytest.fixture
def pg_url(pg_server_url):
    """A fresh, empty database for one test, dropped after it."""
    from simulator import postgres

    name = f"t_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(pg_server_url, name)
    try:
        yield url
    finally:
        postgres.drop_database(pg_server_url, name)


@pytest.fixture
def pg_cluster():
    """A private cluster for one test, for drills that stop, crash and restart
    the server itself (never a shared `PG_DSN` server)."""
    from simulator import postgres

    cluster = postgres.PostgresCluster().start()
    try:
        yield cluster
    finally:
        cluster.destroy()
