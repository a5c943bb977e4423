"""Run code under a real MicroPython interpreter (the WebAssembly port under Node).

`protocols/` must run on the card-only terminal, so its tests execute the package
itself there, not a CPython imitation of it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "tests" / "micropython" / "run.mjs"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def available() -> bool:
    return shutil.which("node") is not None and (
        ROOT / "tests" / "micropython" / "node_modules" / "@micropython"
    ).is_dir()


def package_files(package: str = "protocols") -> dict[str, str]:
    """Every .py and .json file of a project package, placed under /lib."""
    base = ROOT / package
    files = {}
    for path in sorted(base.rglob("*")):
        if path.suffix in (".py", ".json") and "__pycache__" not in path.parts:
            files["/lib/" + path.relative_to(ROOT).as_posix()] = path.read_text("utf-8")
    return files


def run(code: str, files: dict[str, str] | None = None, timeout: float = 120) -> Result:
    spec = {"files": package_files() | (files or {}), "code": code}
    proc = subprocess.run(
        ["node", str(RUNNER)],
        input=json.dumps(spec).encode(),
        capture_output=True,
        timeout=timeout,
        cwd=RUNNER.parent,
    )
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
