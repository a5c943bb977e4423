"""The simulator's command lines run the real fleet end to end."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_simulator_run_reports_nothing_lost_or_duplicated(tmp_path):
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "simulator", "run", "--terminals", "5", "--rate", "100",
                           "--duration", "3", "--workdir", str(tmp_path / "w"), "--report", str(report)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(report.read_text())
    assert result["sent"] >= 250
    assert result["stored"] == result["sent"]
    assert result["lost"] == 0 and result["duplicated"] == 0 and result["altered"] == 0
    assert result["latency_ms"]["samples"] == result["sent"]


def test_demo_runs_for_a_while_and_reconciles(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "simulator", "demo", "--terminals", "3", "--rate", "30",
                           "--duration", "4", "--workdir", str(tmp_path / "demo")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    assert "lost 0 · duplicated 0" in proc.stdout


def test_gateway_export_matches_what_terminals_sent(tmp_path):
    workdir = tmp_path / "w"
    proc = subprocess.run([sys.executable, "-m", "simulator", "run", "--terminals", "2", "--rate", "40",
                           "--duration", "2", "--workdir", str(workdir)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    exported = subprocess.run([sys.executable, "-m", "gateway", "export", "--db", str(workdir / "gateway.db")],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert exported.returncode == 0
    lines = exported.stdout.splitlines()
    ledgers = []
    for name in ("SIM0001", "SIM0002"):
        ledger = subprocess.run([sys.executable, "-m", "firmware", "ledger", "export", "--db",
                                 str(workdir / "terminals" / f"{name}.ledger.db")],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        ledgers += ledger.stdout.splitlines()
    assert lines == ledgers and len(lines) >= 60
    assert all(json.loads(line)["type"] == "sale" for line in lines)


def test_gateway_export_refuses_a_missing_database(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gateway", "export", "--db", str(tmp_path / "none.db")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "no such database" in proc.stderr
    assert not (tmp_path / "none.db").exists()
