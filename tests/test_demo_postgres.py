"""The district demo on PostgreSQL (issue 16, part 7): `python -m simulator demo
--db postgresql://...`, the entry point scripts/demo.sh runs, plays a short
season on a real PostgreSQL database; the store then holds every record the
terminals sent, each once. A database it cannot use is refused before anything
is written, with a message and no traceback."""

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from gateway.store import MASTER_KEY_ENV, connect
from simulator import district as district_model
from simulator.broker import free_port
from simulator.seeding import seed

ROOT = Path(__file__).resolve().parents[1]
DEMO = [sys.executable, "-m", "simulator", "demo"]


def run_demo(args, timeout):
    proc = subprocess.Popen(DEMO + args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)   # its broker, gateway and kiosk go with it on failure
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, out, err


def counts(url) -> dict:
    conn = connect(url, migrate=False)
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("areas", "terminals", "subjects", "records", "users")}
    finally:
        conn.close()


def test_demo_on_postgres_stores_every_sale_once(pg_url, tmp_path):
    report = tmp_path / "report.json"
    code, out, err = run_demo(["--db", pg_url, "--shops", "4", "--days", "2", "--day-seconds", "6",
                               "--misuse", "", "--faults", "", "--duration", "10",
                               "--http", f"127.0.0.1:{free_port()}", "--report", str(report),
                               "--workdir", str(tmp_path / "demo")], timeout=240)
    assert code == 0, err[-3000:] + out[-3000:]
    assert "lost 0 · duplicated 0" in out
    assert not (tmp_path / "demo" / "gateway.db").exists()   # nothing went to the embedded default
    result = json.loads(report.read_text())
    assert result["lost"] == 0 and result["duplicated"] == 0 and result["stored"] == result["sent"] > 0
    tally = result["tally"]
    assert tally.get("approve", 0) + tally.get("partial", 0) > 0 and tally.get("online", 0) > 0
    # the store itself: the records are there, each (terminal, seq) once, with no gap from 1
    conn = connect(pg_url, migrate=False)
    try:
        rows = conn.execute("SELECT terminal, count(*), count(DISTINCT seq), min(seq), max(seq) FROM records "
                            "GROUP BY terminal").fetchall()
        sales = conn.execute("SELECT count(*) FROM records WHERE type = 'sale'").fetchone()[0]
    finally:
        conn.close()
    assert sum(r[1] for r in rows) == result["stored"]
    for terminal, n, distinct, lo, hi in rows:
        assert n == distinct == hi and lo == 1, (terminal, n, distinct, lo, hi)
    assert sales > 0


def test_demo_refuses_a_database_holding_a_district_and_changes_nothing(pg_url, tmp_path, monkeypatch):
    monkeypatch.setenv(MASTER_KEY_ENV, secrets.token_hex(32))   # a server database has no automatic key file
    district = district_model.generate(seed=7, shops=2, subjects=20)
    seed(pg_url, district, tmp_path / "files")
    before = counts(pg_url)
    code, out, err = run_demo(["--db", pg_url, "--shops", "2", "--days", "1", "--misuse", "", "--faults", "",
                               "--http", f"127.0.0.1:{free_port()}", "--workdir", str(tmp_path / "demo")],
                              timeout=120)
    assert code == 2, err[-2000:] + out[-2000:]
    assert "already holds 临平区 (330113)" in out and "createdb" in out
    assert "Traceback" not in out + err
    assert counts(pg_url) == before


def test_demo_refuses_a_database_it_cannot_reach(tmp_path):
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
    code, out, err = run_demo(["--db", url, "--shops", "2", "--days", "1", "--misuse", "", "--faults", "",
                               "--http", f"127.0.0.1:{free_port()}", "--workdir", str(tmp_path / "demo")],
                              timeout=120)
    assert code == 2, err[-2000:] + out[-2000:]
    assert f"cannot reach the database {url}" in out
    assert "Traceback" not in out + err
    assert not list((tmp_path / "demo").glob("broker*"))   # refused before the broker was set up


def test_demo_refuses_a_sqlite_db_inside_its_workdir(tmp_path):
    workdir = tmp_path / "demo"
    code, out, err = run_demo(["--db", str(workdir / "mine.db"), "--workdir", str(workdir)], timeout=60)
    assert code == 2 and "every start empties" in err
    assert "Traceback" not in out + err
