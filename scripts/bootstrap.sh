#!/usr/bin/env bash
# Shared set-up for the two README commands: make .venv, install the Python
# packages, and the system packages (Mosquitto, Node.js) with apt where they are
# missing. Idempotent and quiet when nothing changed, so both commands stay fast
# on a warm machine and work on a fresh Debian one.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

need_apt=()
want_system() {  # want_system <command> <debian package>
    command -v "$1" >/dev/null 2>&1 || need_apt+=("$2")
}

want_deb() {  # want_deb <debian package>: for packages that bring no command (fonts)
    dpkg -s "$1" >/dev/null 2>&1 || need_apt+=("$1")
}

install_system() {
    ((${#need_apt[@]})) || return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing with apt: ${need_apt[*]}"
        # Packages such as nginx and mosquitto start a system service on
        # install; the tests start their own on free ports and leave nothing
        # running, so keep apt from starting any (policy-rc.d, exit 101).
        local policy=/usr/sbin/policy-rc.d made_policy=
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && made_policy=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
        [ -z "$made_policy" ] || rm -f "$policy"
    else
        say "missing system packages: ${need_apt[*]}"
        say "install them first, e.g.: sudo apt-get install ${need_apt[*]}"
        exit 1
    fi
}

python_env() {
    if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        say "Python 3.11 or newer is required ($PY is $("$PY" --version 2>&1))"; exit 1
    fi
    [ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PY" -m venv "$VENV"; }
    local stamp="$VENV/.installed" want
    want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/bootstrap.sh" | sha256sum | cut -c1-16)-$1"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        say "installing Python packages into .venv (log: .venv/install.log)"
        # pip and the build backend talk a lot even with -q (setuptools warns on
        # every editable install): their output goes to the log, shown on failure.
        local log="$VENV/install.log"
        {
            "$VENV/bin/python" -m pip install -q --upgrade pip &&
            "$VENV/bin/python" -m pip install -q -e "$ROOT$2" &&
            # face_recognition declares `dlib`, which would compile from source;
            # the prebuilt dlib-bin (a dependency above) provides the same module.
            "$VENV/bin/python" -m pip install -q --no-deps "face-recognition==1.3.0"
        } > "$log" 2>&1 || { cat "$log" >&2; say "installing Python packages failed (above)"; exit 1; }
        echo "$want" > "$stamp"
    fi
}

node_env() {
    local dir="$ROOT/tests/micropython"
    if [ ! -d "$dir/node_modules/@micropython" ]; then
        say "installing the MicroPython WebAssembly interpreter (npm)"
        (cd "$dir" && npm ci --silent --no-audit --no-fund >/dev/null)
    fi
}

micropython_lib() {
    # micropython-lib's umqtt.simple for the card-only terminal (firmware/mcu/,
    # docs/mcu.md). Its PyPI package is an sdist pip cannot build, so fetch the
    # source archive named by PyPI's JSON API, check it against the sha256 PyPI
    # publishes, and unpack only its module onto the MicroPython library path in
    # .venv (never into the repository). Skipped when that version is in place.
    local lib="$VENV/micropython-lib" name=micropython-umqtt.simple version=1.3.4
    [ "$(cat "$lib/.umqtt-simple" 2>/dev/null)" = "$version" ] && [ -f "$lib/umqtt/simple.py" ] && return 0
    say "fetching $name $version (MicroPython MQTT client) into .venv/micropython-lib"
    "$VENV/bin/python" - "$lib" "$name" "$version" <<'PY'
import hashlib, io, json, os, sys, tarfile, urllib.request
lib, name, version = sys.argv[1:]
meta = json.load(urllib.request.urlopen("https://pypi.org/pypi/%s/json" % name, timeout=60))
sdist = [u for u in meta["releases"][version] if u["packagetype"] == "sdist"][0]
data = urllib.request.urlopen(sdist["url"], timeout=60).read()
got = hashlib.sha256(data).hexdigest()
if got != sdist["digests"]["sha256"]:
    sys.exit("%s: sha256 %s, PyPI says %s" % (sdist["filename"], got, sdist["digests"]["sha256"]))
with tarfile.open(fileobj=io.BytesIO(data)) as tar:
    member = [m for m in tar.getmembers() if m.name.endswith("/umqtt/simple.py")][0]
    text = tar.extractfile(member).read()
os.makedirs(os.path.join(lib, "umqtt"), exist_ok=True)
for path, content in ((os.path.join(lib, "umqtt", "simple.py"), text), (os.path.join(lib, "umqtt", "__init__.py"), b"")):
    with open(path + ".tmp", "wb") as f:
        f.write(content)
    os.replace(path + ".tmp", path)
with open(os.path.join(lib, ".umqtt-simple"), "w") as f:
    f.write(version)
PY
}
