"""Shared fixtures: real processes on free ports, always cleaned up."""

from __future__ import annotations

import os

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
