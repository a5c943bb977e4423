#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs, then pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/test_envelope.py -x).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
want_system mosquitto mosquitto
want_system mosquitto_passwd mosquitto-clients
want_system node nodejs
want_system npm npm
want_system chromium chromium
want_system nginx nginx-light  # the dashboard's reverse-proxy example (deploy/nginx-dashboard.conf), run for real
want_system espeak-ng espeak-ng  # spoken prompts (firmware/voice.py)
want_deb postgresql  # a private PostgreSQL cluster the tests start and restart (simulator/postgres.py), unless PG_DSN is set
want_deb fonts-wqy-microhei  # Chinese glyphs in browser screenshots and the ledger PDF
install_system
python_env test "[test]"
micropython_lib  # umqtt.simple for the MicroPython terminal (firmware/mcu/)
node_env
cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$@"
