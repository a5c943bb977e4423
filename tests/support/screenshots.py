"""Screenshots of the UIs for docs/screenshots/, taken by the browser tests only
when asked: a plain test run writes nothing into the clone.

    scripts/screenshots.sh

which is `pytest -p tests.support.screenshots --screenshots docs/screenshots
tests/test_terminal_ui.py tests/test_dashboard.py tests/test_dashboard_queue.py
tests/test_dashboard_desk.py`. The option lives in this
plugin, loaded with `-p` (an option must exist before pytest reads the command
line); without it `save` does nothing.
"""

from __future__ import annotations

from pathlib import Path

_folder: Path | None = None


def pytest_addoption(parser):
    parser.addoption("--screenshots", metavar="DIR", default=None,
                     help="save the browser tests' screenshots into DIR (docs/screenshots to refresh the docs)")


def pytest_configure(config):
    global _folder
    value = config.getoption("--screenshots", None)
    _folder = (config.invocation_params.dir / value) if value else None


def folder() -> Path | None:
    """Where screenshots go in this run, or None: not taken."""
    return _folder


def save(page, name: str, **options) -> Path | None:
    """`page.screenshot` as DIR/NAME.png when the run asked for screenshots."""
    if _folder is None:
        return None
    _folder.mkdir(parents=True, exist_ok=True)
    path = _folder / f"{name}.png"
    page.screenshot(path=str(path), **options)
    return path
