"""The MicroPython card-only terminal (firmware/mcu/) as the tests run it: the
real MicroPython unix port from PyPI (`.venv/bin/micropython`), micropython-lib's
umqtt.simple where scripts/test.sh put it (.venv/micropython-lib), and the PN532
emulator with its card-placing socket as a real process
(`python -m simulator pn532-field`)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from simulator.mcu_fleet import FieldProcess, micropython as _micropython  # noqa: F401 (FieldProcess: re-exported)

ROOT = Path(__file__).resolve().parents[2]
MCU = ROOT / "firmware" / "mcu"
VENV = ROOT / ".venv"
LIB = VENV / "micropython-lib"


def micropython() -> str:
    return _micropython()


PATH_SETUP = "import sys\nsys.path[:0] = [%r, %r, %r]\n" % (str(MCU), str(ROOT), str(LIB))


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def lines(self, prefix: str) -> list[str]:
        return [line[len(prefix):].strip() for line in self.stdout.splitlines() if line.startswith(prefix)]


def run(code: str, heap: str | None = None, timeout: float = 60, cwd: Path | None = None) -> Result:
    """Run `code` under MicroPython with firmware/mcu, the repository and
    micropython-lib on its path; `heap` e.g. "100K" (-X heapsize)."""
    cmd = [micropython()] + (["-X", f"heapsize={heap}"] if heap else []) + ["-c", PATH_SETUP + code]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=cwd or ROOT)
    return Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))


def card_file(directory: Path, subject: str, kind: str = "ntag215", **issue) -> tuple[Path, str]:
    """(card file, UID hex) of a subject card signed by the test registry."""
    from simulator.pn532_field import write_card_file
    from tests.support import quota_fixtures as fx
    uid = issue.pop("uid", None)
    if uid is None and kind == "classic1k":
        import hashlib
        uid = hashlib.sha256(subject.encode()).digest()[:4]
    payload, uid = fx.issue_card(subject, uid=uid, **issue)
    path = Path(directory) / f"{subject}-{kind}.card.json"
    write_card_file(path, payload, uid, kind)
    return path, uid.hex()


def json_arg(value) -> str:
    """A value as a MicroPython literal (JSON text inside a Python string)."""
    return "json.loads(%r)" % json.dumps(value)


def bytecode_tree(dest: Path) -> Path:
    """A copy of what the terminal runs, precompiled with mpy-cross (bytecode
    .mpy, as a board loads it: no compiler and no source text in the heap):
    dest/protocols/*.mpy with its data, dest/firmware/mcu/*.mpy, main.py as
    source (it runs as the script), micropython-lib linked where main.py looks.
    Returns the main.py to run."""
    import shutil
    import sys
    cross = str(Path(sys.executable).with_name("mpy-cross"))
    (dest / "firmware" / "mcu").mkdir(parents=True)
    (dest / "protocols").mkdir()
    for source in sorted((ROOT / "protocols").glob("*.py")) + sorted(MCU.glob("*.py")):
        rel = source.relative_to(ROOT)
        if source.name == "main.py":
            shutil.copy(source, dest / rel)
        else:
            subprocess.run([cross, "-o", str(dest / rel.with_suffix(".mpy")), str(source)], check=True)
    shutil.copytree(ROOT / "protocols" / "data", dest / "protocols" / "data")
    (dest / ".venv").mkdir()
    (dest / ".venv" / "micropython-lib").symlink_to(LIB)
    return dest / "firmware" / "mcu" / "main.py"
