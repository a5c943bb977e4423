"""Shared fixtures: real processes on free ports, always cleaned up."""

from __future__ import annotations

import fcntl
import os
import uuid

import pytest

from tests.support import micropython as _micropython


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """On pytest-xdist workers (pyproject's addopts: `-n 2 --dist loadfile
    --no-loadscope-reorder`, a test file per unit of work, handed out in
    collection order), put the files of `slow` tests first, keeping the
    (random) order otherwise, so a minutes-long file (the season, the fault
    drills) does not start last while the other worker sits idle. A file stays
    on one worker, so its module-scoped fixtures are built once, as in a
    serial run. A serial run keeps pytest-randomly's order untouched."""
    if not hasattr(config, "workerinput"):
        return
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)   # stable: the order within each part is kept


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A test marked `alone` runs while no other worker runs a test: it holds
    an exclusive lock on a file in the run's shared temp folder, every other
    test a shared one, for its set-up, call and tear-down. For tests whose
    outcome depends on the CPU keeping up in real time (a camera twin that
    plays frames at 1 fps and drops the ones a slow consumer misses). No
    lock in a serial run."""
    if not hasattr(item.config, "workerinput"):
        return (yield)
    path = item.config._tmp_path_factory.getbasetemp().parent / "alone.lock"
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if item.get_closest_marker("alone") else fcntl.LOCK_SH)
        try:
            return (yield)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


FACE_FILES = "tests/test_face_"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile`, except that the face tests (tests/test_face_*.py) go
    to one worker together: they share the encodings of every test photo,
    computed once per process (tests/support/face_images.py, face_hardset.py:
    minutes of CPU), which two workers would each compute again."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FaceTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return FACE_FILES + "*" if scope.startswith(FACE_FILES) else scope

    return FaceTogether(config, log)


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
