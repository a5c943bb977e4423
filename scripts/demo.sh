#!/usr/bin/env bash
# The district demo on embedded defaults: broker, gateway, simulated shops.
# Extra arguments go to `python -m simulator demo`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
want_system mosquitto mosquitto
install_system
python_env demo ""
cd "$ROOT"
exec "$VENV/bin/python" -m simulator demo "$@"
