#!/usr/bin/env bash
# The district demo: broker, gateway, simulated shops, dashboard. On embedded
# defaults (a fresh SQLite file in var/demo), or on PostgreSQL with
#   scripts/demo.sh --db postgresql://USER@HOST:PORT/DBNAME
# (an empty database: one holding a district, or one it cannot reach, is
# refused; the demo never drops a database). docs/deploy.md runs it for real.
# Extra arguments go to `python -m simulator demo`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
want_system mosquitto mosquitto
install_system
python_env demo ""
cd "$ROOT"
exec "$VENV/bin/python" -m simulator demo "$@"
