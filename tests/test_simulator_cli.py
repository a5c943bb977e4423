"""The simulator's command lines run the real fleet end to end."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from firmware.prices import PriceList

from simulator.broker import free_port
from simulator.processes import wait_for

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


def test_demo_serves_the_dashboard_sells_refuses_and_reconciles(tmp_path):
    """The README's main-job command, short: the dashboard answers on the URL it
    prints and the printed login works; buyers' cards and carts go through the
    counters, some sales approved and some refused; nothing lost or duplicated."""
    port = free_port()
    report = tmp_path / "report.json"
    proc = subprocess.Popen([sys.executable, "-m", "simulator", "demo", "--shops", "5", "--day-seconds", "6",
                             "--misuse", "card_sharing,banned_sold", "--faults", "",
                             "--duration", "15", "--http", f"127.0.0.1:{port}", "--report", str(report),
                             "--workdir", str(tmp_path / "demo")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)   # its broker, gateway and kiosk go with it on failure
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        def printed(prefix):
            return [l for l in list(lines) if l.startswith(prefix)]
        wait_for(lambda: printed("dashboard: ") and len(printed("login: ")) == 2 and printed("counter: "), 90,
                 "dashboard URL, logins and the counter's URL")
        counter = printed("counter: ")[0].split()[1]
        assert "PIN" in printed("counter: ")[0]
        assert httpx.get(counter + "api/state", timeout=5).json()["screen"] in ("signin", "idle")
        url = printed("dashboard: ")[0].split()[1]
        assert url == f"http://127.0.0.1:{port}/"
        assert httpx.get(url, timeout=5).status_code == 200
        name, _, password = printed("login: ")[0].split()[1:4]
        bad = httpx.post(url + "api/login", json={"name": name, "password": password + "x"}, timeout=5)
        assert bad.status_code == 401
        token = httpx.post(url + "api/login", json={"name": name, "password": password}, timeout=5).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        me = httpx.get(url + "api/me", headers=headers, timeout=5).json()
        assert me["area"] == "330113" and me["display_name"] == "周建华（区农业农村局）"   # assignees by name
        wait_for(lambda: httpx.get(url + "api/overview", headers=headers, timeout=5).json()["totals"]["sales"] > 0,
                 30, "sales on the dashboard's overview")
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=5)
    out = "".join(lines)
    assert proc.returncode == 0, proc.stderr.read()[-2000:] + out[-2000:]
    assert "lost 0 · duplicated 0" in out
    # over TLS on the generated broker configuration: passwords on one listener,
    # client certificates on the other, the plain one only probed for readiness
    broker_line = printed("broker ")[0]
    urls = re.fullmatch(r"broker mqtts://127\.0\.0\.1:(\d+) \(TLS; client certificates on "
                        r"mqtts://127\.0\.0\.1:(\d+); .*", broker_line.strip())
    assert urls, broker_line
    tls_port, cert_port = urls.groups()
    log = (tmp_path / "demo" / "broker" / "mosquitto.log").read_text()
    assert f"on port {tls_port}." in log and f"on port {cert_port}." in log
    result = json.loads(report.read_text())
    assert result["lost"] == 0 and result["duplicated"] == 0 and result["stored"] == result["sent"] > 0
    tally = result["tally"]
    assert tally.get("approve", 0) + tally.get("partial", 0) > 0 and tally.get("refuse", 0) > 0
    assert tally.get("errors", 0) == 0 and tally.get("online", 0) > 0
    assert sum(result["codes"].values()) > 0
    (price_file,) = (tmp_path / "demo" / "counter").glob("*.ledger.prices.db")   # the counter shop has its prices
    prices = PriceList(price_file)
    try:
        assert len(prices.all()) > 10 and prices.deposit_fen() == 50 and all(p["fen"] > 0 for p in prices.all())
    finally:
        prices.close()


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


def test_demo_takes_another_port_when_the_dashboard_port_is_taken():
    from simulator.demo_cli import pick_http

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        host, port = pick_http(f"127.0.0.1:{taken}")
        assert host == "127.0.0.1" and port != taken
    free = free_port()
    assert pick_http(f"127.0.0.1:{free}") == ("127.0.0.1", free)
