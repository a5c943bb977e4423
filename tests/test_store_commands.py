"""Every gateway command takes `--db PATH` or `--db postgresql://...` and
behaves the same on both (issue 16): each is driven here as the operator runs
it, as a process, on SQLite and on PostgreSQL, and what it wrote is read back
through the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway import store
from tests.support import quota_fixtures as fx
from tests.support.supervision import DISTRICT, GRID, KEY, TOWN1, Chain, sale_body

ROOT = Path(__file__).resolve().parents[1]
MASTER_KEY = "44" * 32
PASSWORD = "long-enough-1"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        yield str(tmp_path / "gateway.db")
    else:
        yield request.getfixturevalue("pg_url")
    store.close_pools()


def gateway(*args, ok=True):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GATEWAY_MASTER_KEY": MASTER_KEY, "PW": PASSWORD}
    env.pop("GATEWAY_KEY_FILE", None)
    out = subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env=env)
    if ok:
        assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out


def grid_toml(path: Path) -> Path:
    lines = []
    for kind in ("areas", "shops"):
        for row in GRID[kind]:
            lines.append(f"[[{kind}]]")
            lines += [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in row.items()]
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def test_the_operator_commands_work_on_either_backend(db, tmp_path, monkeypatch):
    monkeypatch.setenv(store.MASTER_KEY_ENV, MASTER_KEY)
    gateway("terminal", "--db", db, "add", "TA", "--shop", "SHOP1", "--key", KEY.hex())
    assert "TA" in gateway("terminal", "--db", db, "list").stdout
    assert "4 shops" in gateway("grid", "--db", db, "import", str(grid_toml(tmp_path / "grid.toml"))).stdout
    assert "SHOP1" in gateway("grid", "--db", db, "list").stdout
    gateway("users", "--db", db, "add", "--role", "district", "--area", DISTRICT, "--password-env", "PW", "d1")
    gateway("users", "--db", db, "add", "--role", "town", "--area", TOWN1, "--password-env", "PW", "t1")
    gateway("users", "--db", db, "disable", "t1")
    assert "t1\ttown\t330113001\tdisabled" in gateway("users", "--db", db, "list").stdout
    refused = gateway("users", "--db", db, "add", "--role", "village", "--area", TOWN1, "--password-env", "PW", "x",
                      ok=False)
    assert refused.returncode == 2 and "is a town" in refused.stderr
    (tmp_path / "params.json").write_text(json.dumps(fx.params()), "utf-8")
    assert "version 2" in gateway("policy", "import", str(tmp_path / "params.json"), "--db", db).stdout
    assert "version 2" in gateway("catalogue", "import", str(ROOT / "protocols" / "data" / "catalogue.json"),
                                  "--db", db).stdout
    subjects = fx.subjects({"S1": 10, "S2": 8}, TOWN1)
    gateway("subjects", "import", str(fx.write_jsonl(tmp_path / "s.jsonl", subjects)), "--db", db)
    gateway("subjects", "keys", "--db", db, "add", fx.registry_public_hex())
    assert fx.registry_public_hex() in gateway("subjects", "keys", "--db", db, "list").stdout
    gateway("revoke", "CARD-LOST", "--db", db)
    balance = json.loads(gateway("balance", "S1", "--db", db, "--date", "2025-06-01").stdout)
    assert balance["subject"] == "S1" and balance["categories"]
    face = {"subject": "S1", "model": "dlib_face_recognition_resnet_model_v1/5pt", "encodings": [[0.1] * 128]}
    (tmp_path / "faces.jsonl").write_text(json.dumps(face) + "\n", "utf-8")
    assert json.loads(gateway("faces", "import", str(tmp_path / "faces.jsonl"), "--db", db).stdout)["imported"] == 1
    assert "S1" in gateway("faces", "list", "--db", db).stdout
    assert gateway("export", "--db", db).stdout == ""

    conn = store.connect(db)
    try:
        from gateway.store import grid
        from gateway.enforcement import registry
        from gateway.store import registry as registry_store
        from gateway.store import users
        assert users.login(conn, "d1", PASSWORD, 0) is not None and users.login(conn, "t1", PASSWORD, 0) is None
        assert grid.shop(conn, "SHOP1").designated
        assert registry.revocations(conn) == ["CARD-LOST"]
        assert [k.hex() for k in registry_store.trusted_keys(conn)] == [fx.registry_public_hex()]
        assert conn.execute("SELECT count(*) FROM subjects").fetchone()[0] == 2
        assert dict(conn.execute("SELECT name, version FROM config_sections")) == {
            "catalogue": 2, "params": 2, "revocations": 2}
    finally:
        conn.close()


def test_a_missing_sqlite_file_is_not_made_by_a_read_and_a_bad_url_is_named(tmp_path):
    out = gateway("export", "--db", str(tmp_path / "typo.db"), ok=False)
    assert out.returncode == 1 and "no such database" in out.stderr and not (tmp_path / "typo.db").exists()
    out = gateway("balance", "S1", "--db", "mysql://h/db", ok=False)
    assert out.returncode != 0 and "postgresql://" in out.stderr


def test_run_with_the_dashboard_on_a_server_database_asks_for_photos_before_touching_it(pg_url):
    """Inspection photos live beside a SQLite file; a database on a server has
    no such place. `run --http` without `--photos` is refused at once, with
    the database left as it was (the supervise child used to die with a
    traceback while ingest ran on)."""
    out = gateway("run", "--db", pg_url, "--broker", "mqtt://127.0.0.1:1", "--http", "127.0.0.1:8099", ok=False)
    assert out.returncode == 2 and "--photos" in out.stderr and "Traceback" not in out.stderr, out.stderr
    import psycopg

    with psycopg.connect(pg_url) as conn:
        tables = conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").fetchone()
    assert tables[0] == 0, "the refused command migrated the database"


def test_run_and_supervise_store_follow_and_export_on_either_backend(db, tmp_path, monkeypatch):
    """`gateway run` (ingest pipeline and its `supervise` child) on the URL:
    signed records over a real broker are stored, acknowledged, followed by
    the quota ledger and the rules, and exported."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from simulator.broker import Mosquitto
    from simulator.processes import GatewayProcess, wait_for

    monkeypatch.setenv(store.MASTER_KEY_ENV, MASTER_KEY)
    gateway("terminal", "--db", db, "add", "TA", "--shop", "SHOP1", "--key", KEY.hex())
    gateway("grid", "--db", db, "import", str(grid_toml(tmp_path / "grid.toml")))
    (tmp_path / "params.json").write_text(json.dumps(fx.params()), "utf-8")
    gateway("policy", "import", str(tmp_path / "params.json"), "--db", db)
    gateway("subjects", "import", str(fx.write_jsonl(tmp_path / "s.jsonl", fx.subjects({"S00001": 10}, TOWN1))),
            "--db", db)
    monkeypatch.setenv("GATEWAY_MASTER_KEY", MASTER_KEY)
    with Mosquitto(tmp_path / "broker") as broker:
        gw = GatewayProcess(db, broker.url, tmp_path / "gateway.log",
                            extra_args=["--photos", str(tmp_path / "photos")])
        gw.start().wait_subscribed()
        try:
            chain = Chain("TA")
            now = time.time_ns() // 1_000_000
            records = [chain.add("sale", sale_body("S00001", mode="offline", proof={},
                                                   consumption={"pesticide": 100 * (i + 1)}), now + i)
                       for i in range(3)]
            acks = []
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="TA", protocol=mqtt.MQTTv311)
            client.on_message = lambda c, u, m: acks.append(m.payload)
            client.connect("127.0.0.1", broker.port)
            client.subscribe("agri/v1/t/TA/ack", 1)
            client.loop_start()
            client.publish("agri/v1/t/TA/up", chain.batch(records), qos=1).wait_for_publish(10)
            wait_for(lambda: acks, 30, "an ack for the batch")
            client.loop_stop()
            client.disconnect()

            def followed():
                conn = store.connect(db)
                try:
                    return conn.execute("SELECT count(*) FROM quota_moves WHERE terminal = 'TA'").fetchone()[0] == 3 \
                        and conn.execute("SELECT count(*) FROM sales WHERE terminal = 'TA'").fetchone()[0] == 3
                finally:
                    conn.close()
            wait_for(followed, 60, "the quota ledger and the rules to follow the records")
        finally:
            gw.stop()
    lines = gateway("export", "--db", db).stdout.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]
