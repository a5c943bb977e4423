#!/usr/bin/env bash
# Regenerate docs/screenshots/ from the browser tests (the kiosk UI and the
# dashboard). A plain test run never writes there; this one asks for the
# screenshots (tests/support/screenshots.py). Extra arguments go to pytest.
set -euo pipefail
HERE="$(dirname "${BASH_SOURCE[0]}")"
exec "$HERE/test.sh" -p tests.support.screenshots --screenshots docs/screenshots -p no:randomly \
    tests/test_terminal_ui.py tests/test_dashboard.py tests/test_dashboard_queue.py tests/test_dashboard_desk.py "$@"
