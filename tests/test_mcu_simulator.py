"""The simulator runs a mix of Pi agents and card-only MicroPython terminals
(`python -m simulator run --mcu N`): both kinds sell against one broker and
gateway, and every record of every ledger, SQLite or flash, is stored once."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.mcu import ROOT


def test_simulator_runs_pi_and_micropython_terminals_together(tmp_path):
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "simulator", "run", "--terminals", "2", "--mcu", "2", "--rate", "10",
                           "--duration", "4", "--workdir", str(tmp_path / "run"), "--report", str(report)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(report.read_text())
    assert result["lost"] == 0 and result["duplicated"] == 0 and result["altered"] == 0 and result["drained"]
    mcu = result["mcu"]
    assert mcu["terminals"] == 2 and mcu["sent"] >= 8 and mcu["approved"] >= 8   # 2 a second each, for 4 s
    assert mcu["stored"] == mcu["sent"] and mcu["lost"] == 0
    assert result["sent"] > mcu["sent"]      # the Pi agents sold too
