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


_BOXES = """selector => [...document.querySelectorAll(selector)].map(e => {
    const r = e.getBoundingClientRect();
    return { x: r.x, y: r.y, width: r.width, height: r.height };
})"""


def boxes(page, selector: str) -> list[dict]:
    """The boxes of every element matching `selector`, measured in one script run.
    The counter and the dashboard redraw on live events, so an element found by
    one Playwright call may be replaced before the next one measures it (its box
    then comes back None)."""
    return page.evaluate(_BOXES, selector)


def box(page, selector: str) -> dict:
    """The box of the one element matching `selector` (fails if there is not exactly one)."""
    found = boxes(page, selector)
    assert len(found) == 1, (selector, len(found))
    return found[0]


def overlaps(a: dict, b: dict) -> bool:
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


def dashboard_page(browser, url: str, name: str, password: str, viewport: dict | None = None, **context):
    """A page of the supervision dashboard at `url`, signed in as `name`, its
    overview drawn; `context`: more browser-context options (a time zone,
    downloads). The page owns its context: closing either closes both."""
    page = browser.new_page(viewport=viewport or {"width": 1366, "height": 768}, locale="zh-CN", **context)
    page.set_default_timeout(15_000)
    page.goto(url + "/")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=card-sales]")
    return page
