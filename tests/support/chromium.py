"""Debian's Chromium for the browser tests, launched one way everywhere: the
flags this machine needs (no sandbox as root, no GPU, and no background
networking, whose connections the closed network refuses), never a browser a
test tool downloads itself."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@contextmanager
def launched():
    """A Chromium for a test module (each test makes its own context)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium missing: scripts/test.sh installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()
