"""Files and keys at rest (issue 15, item 17; docs/security.md, "Files and
keys at rest"): the gateway database, its WAL, the terminal's ledger and config
database are 0600 in 0700 directories; terminal record keys are sealed under
the gateway's master key, an old database with clear keys is sealed in place
and every terminal still verifies, and a wrong master key stops the gateway at
start with a message that says so."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware.configstore import ConfigStore
from firmware.face import devicekey
from firmware.face import gallery as gallery_file
from firmware.ledger import Ledger
from gateway.enforcement.fleet import provision
from tests.support.inline_ingest import InlineIngest as Ingest
from gateway.ingest.pipeline import IngestProcess
from gateway.store import (AUTO_KEY_FILE, KEY_FILE_ENV, MASTER_KEY_ENV, SEALED_PREFIX, KeyCache, MasterKeyError, Store,
                           connect)
from protocols import envelope, topics
from simulator.broker import Mosquitto
from simulator.processes import GatewayProcess, wait_for
from tests.records_factory import KEY, batch, chain, sale
from tests.support import clear_keys_db

ROOT = Path(__file__).resolve().parents[1]
OLD_DB = ROOT / "tests" / "data" / "gateway-clear-keys.sqlite"


@pytest.fixture(autouse=True)
def usual_umask_and_no_master_key(monkeypatch):
    """The umask most systems have (022: what made every file 0644 before),
    and no master key in the environment unless a test sets one."""
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def raw_bytes(db: Path) -> bytes:
    """The database file and its WAL, as a thief copying the directory gets them."""
    return b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())


def assert_no_clear_key(db: Path, keys: list[bytes]) -> None:
    data = raw_bytes(db)
    for key in keys:
        assert key.hex().encode() not in data and key.hex().upper().encode() not in data, "hex key in the file"
        assert key not in data, "raw key in the file"


def master_key_file(path: Path, key: bytes) -> Path:
    path.write_text(key.hex() + "\n")
    path.chmod(0o600)
    return path


# ---------------------------------------------------------------- permissions, gateway

def test_a_new_gateway_database_its_wal_and_shm_are_0600_in_0700_directories(tmp_path):
    db = tmp_path / "var" / "agri" / "gateway.db"
    store = Store(db)
    try:
        provision(store, "T1", "SHOP-1", 0)
        other = connect(db)  # what `gateway supervise` and the API open beside it
        other.execute("SELECT count(*) FROM terminals").fetchone()
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), db.parent / AUTO_KEY_FILE):
            assert mode(path) == 0o600, path
        assert mode(tmp_path / "var") == 0o700 and mode(tmp_path / "var" / "agri") == 0o700
        other.close()
    finally:
        store.close()


def test_a_gateway_database_in_an_existing_directory_is_0600_from_its_first_byte(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    conn = connect(folder / "gw.db")  # `gateway registry|users|grid` create it this way
    try:
        conn.execute("INSERT INTO missing(terminal, seq_from, seq_to, noticed) VALUES ('T1', 1, 1, 0)")
        assert mode(folder / "gw.db") == 0o600 and mode(folder / "gw.db-wal") == 0o600
        assert mode(folder) == 0o755  # a directory the gateway did not make is left alone
    finally:
        conn.close()


def test_an_existing_gateway_database_readable_by_others_is_tightened_on_open_with_a_warning(tmp_path, caplog):
    db = tmp_path / "gw.db"
    old = sqlite3.connect(db)  # as the code before made it: 0644, WAL 0644
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE t(x)")
    old.execute("INSERT INTO t VALUES (1)")
    old.commit()
    assert mode(db) == 0o644 and mode(Path(f"{db}-wal")) == 0o644
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.store"):
            store = Store(db)
        store.close()
    finally:
        old.close()
    assert mode(db) == 0o600
    assert any("tightened file permissions" in r.getMessage() and "gw.db" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- permissions, terminal

def test_the_ledger_and_its_wal_are_0600_in_a_0700_directory(tmp_path):
    path = tmp_path / "agri" / "data" / "T1.ledger.db"
    ledger = Ledger(path, "T1", KEY, reserve_bytes=0)
    try:
        ledger.append("sale", sale(1), 1)
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert mode(p) == 0o600, p
        assert mode(tmp_path / "agri") == 0o700 and mode(tmp_path / "agri" / "data") == 0o700
    finally:
        ledger.close()


def test_a_ledger_readable_by_others_is_tightened_on_open(tmp_path, caplog):
    path = tmp_path / "T1.ledger.db"
    Ledger(path, "T1", KEY, reserve_bytes=0).close()
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="firmware.ledger"):
        Ledger(path, "T1", KEY, reserve_bytes=0).close()
    assert mode(path) == 0o600
    assert any("tightened" in r.getMessage() for r in caplog.records)


def test_the_config_database_and_its_wal_are_0600_in_a_0700_directory(tmp_path):
    path = tmp_path / "agri" / "T1.config.db"
    store = ConfigStore(path, wall_ms=lambda: 0)
    try:
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert mode(p) == 0o600, p
        assert mode(tmp_path / "agri") == 0o700
    finally:
        store.close()


def test_the_face_device_key_and_sealed_gallery_are_0600_in_0700_directories(tmp_path):
    key = devicekey.create(tmp_path / "etc" / "agri" / "face-gallery.key")
    gallery = tmp_path / "var" / "T1.gallery.aqf"
    gallery_file.save_payload(gallery, b"{}", key)
    assert mode(tmp_path / "etc" / "agri" / "face-gallery.key") == 0o600 and mode(gallery) == 0o600
    for folder in (tmp_path / "etc", tmp_path / "etc" / "agri", tmp_path / "var"):
        assert mode(folder) == 0o700, folder


# ---------------------------------------------------------------- record keys sealed

def test_the_database_and_its_wal_hold_no_terminal_key_in_the_clear(tmp_path):
    db = tmp_path / "gw.db"
    store = Store(db)
    keys = [os.urandom(32) for _ in range(3)]
    try:
        for i, key in enumerate(keys):
            provision(store, f"T{i}", "SHOP", 0, key_hex=key.hex())
        ingest = Ingest(store, lambda *a: None, wall_ms=lambda: 1)
        ingest.start()
        try:
            for i, key in enumerate(keys):
                ingest.submit_batch(f"agri/v1/t/T{i}/up", f"T{i}", batch(f"T{i}", 0, chain(f"T{i}", 3, key=key)))
            assert ingest.drain(10)
        finally:
            ingest.stop()
        assert_no_clear_key(db, keys)     # while open: the WAL too
        assert store.count_records() == 9 and not store.quarantined()   # every terminal verified
        assert all(k.startswith(SEALED_PREFIX) for (k,) in store.conn.execute("SELECT key FROM terminals"))
    finally:
        store.close()
    assert_no_clear_key(db, keys)
    master = (db.parent / AUTO_KEY_FILE).read_text().strip()
    assert master.encode() not in raw_bytes(db) and bytes.fromhex(master) not in raw_bytes(db)


def test_an_old_database_with_clear_keys_is_sealed_in_place_and_every_terminal_still_verifies(tmp_path, caplog):
    db = tmp_path / "gw.db"
    shutil.copy(OLD_DB, db)
    db.chmod(0o644)
    assert clear_keys_db.key_of("T1").hex().encode() in raw_bytes(db)  # the fixture is what it says
    with caplog.at_level(logging.WARNING, logger="gateway.store"):
        store = Store(db)
    try:
        assert_no_clear_key(db, clear_keys_db.every_clear_key())
        assert any("sealed 4 terminal keys" in r.getMessage() for r in caplog.records)
        assert any("NO MASTER KEY CONFIGURED" in r.getMessage() for r in caplog.records)
        assert mode(db) == 0o600 and mode(tmp_path / AUTO_KEY_FILE) == 0o600
        assert [t["id"] for t in store.terminals()] == list(clear_keys_db.LIVE)
        assert store.count_records() == clear_keys_db.RECORDS * len(clear_keys_db.LIVE)
        for t in clear_keys_db.LIVE:
            assert store.terminal_key(t) == clear_keys_db.key_of(t)
        # the real process pipeline (writer and verifier processes, which open
        # the database themselves) takes each terminal's next records
        acks: dict[str, int] = {}
        ingest = IngestProcess(store.path, lambda t, upto, seen: acks.__setitem__(t, upto), KeyCache(store),
                               verifiers=2)
        ingest.start()
        try:
            n = clear_keys_db.RECORDS
            for t in clear_keys_db.LIVE:
                records = chain(t, 2 * n, key=clear_keys_db.key_of(t))
                ingest.submit_batch(f"agri/v1/t/{t}/up", t, batch(t, n, records[n:]))
            wait_for(lambda: all(acks.get(t) == 2 * n for t in clear_keys_db.LIVE), 30, "every terminal acked")
        finally:
            ingest.stop()
        assert store.count_records() == 2 * n * len(clear_keys_db.LIVE) and store.quarantined() == []
        assert store.alerts() == []
    finally:
        store.close()
    reopened = Store(db)  # sealed once: nothing left to migrate
    try:
        assert all(k.startswith(SEALED_PREFIX) for (k,) in reopened.conn.execute("SELECT key FROM terminals"))
    finally:
        reopened.close()
    assert_no_clear_key(db, clear_keys_db.every_clear_key())


def test_a_wrong_master_key_is_a_clear_error_at_start_not_a_wrong_terminal_key(tmp_path, monkeypatch):
    db = tmp_path / "gw.db"
    right, wrong = os.urandom(32), os.urandom(32)
    right_file = master_key_file(tmp_path / "right.key", right)
    wrong_file = master_key_file(tmp_path / "wrong.key", wrong)
    store = Store(db, right_file)
    provision(store, "T1", "SHOP", 0, key_hex=KEY.hex())
    store.close()
    with pytest.raises(MasterKeyError, match="is not the master key the terminal keys in .* are sealed under"):
        Store(db, wrong_file)
    monkeypatch.setenv(MASTER_KEY_ENV, wrong.hex())
    with pytest.raises(MasterKeyError, match=r"\$GATEWAY_MASTER_KEY is not the master key"):
        Store(db)
    monkeypatch.delenv(MASTER_KEY_ENV)
    for command, *rest in (["run", "--broker", "mqtt://127.0.0.1:9", "--no-supervision"], ["terminal", "list"]):
        done = subprocess.run([sys.executable, "-m", "gateway", command, "--db", str(db), "--master-key-file",
                               str(wrong_file), *rest], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (command, done.returncode, done.stderr[-800:])
        assert "is not the master key the terminal keys" in done.stderr
        assert wrong.hex() not in done.stderr + done.stdout and right.hex() not in done.stderr + done.stdout
    store = Store(db, right_file)  # the right one still opens them
    try:
        assert store.terminal_key("T1") == KEY
    finally:
        store.close()


def test_sealed_keys_without_their_master_key_are_a_clear_error_never_a_new_key(tmp_path, monkeypatch):
    db = tmp_path / "gw.db"
    store = Store(db)
    provision(store, "T1", "SHOP", 0, key_hex=KEY.hex())
    store.close()
    (tmp_path / AUTO_KEY_FILE).unlink()    # the database copied without its key
    with pytest.raises(MasterKeyError, match="sealed under a master key, and none is given"):
        Store(db)
    assert not (tmp_path / AUTO_KEY_FILE).exists()
    with pytest.raises(MasterKeyError, match="no such file"):
        Store(db, tmp_path / "missing.key")
    (tmp_path / "short.key").write_text("abcd\n")
    with pytest.raises(MasterKeyError, match="64 hex digits"):
        Store(db, tmp_path / "short.key")
    monkeypatch.setenv(MASTER_KEY_ENV, "00" * 32)
    with pytest.raises(MasterKeyError, match="set only one"):
        Store(db, tmp_path / "short.key")


def test_rekey_seals_every_terminal_key_under_the_new_master_key(tmp_path):
    db = tmp_path / "gw.db"
    store = Store(db)
    provision(store, "T1", "SHOP", 0, key_hex=KEY.hex())
    store.close()
    new = master_key_file(tmp_path / "new.key", os.urandom(32))
    done = subprocess.run([sys.executable, "-m", "gateway", "terminal", "--db", str(db), "rekey", "--to", str(new)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "sealed 1 terminal keys" in done.stdout, done.stderr[-800:]
    with pytest.raises(MasterKeyError):
        Store(db)                       # the automatic key no longer opens them
    store = Store(db, new)
    try:
        assert store.terminal_key("T1") == KEY
    finally:
        store.close()


# ---------------------------------------------------------------- the whole `gateway run` process tree

@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.kill()


def test_gateway_run_with_a_master_key_file_verifies_in_its_verifier_processes(tmp_path, broker):
    """The key given as an option only (no environment): the verifier and
    writer processes get it from `gateway run`, every record is stored, the
    acks carry MACs under the terminal's key, and neither key is logged."""
    db = tmp_path / "data" / "gw.db"
    master = os.urandom(32)
    key_file = master_key_file(tmp_path / "master.key", master)
    added = subprocess.run([sys.executable, "-m", "gateway", "terminal", "--db", str(db), "--master-key-file",
                            str(key_file), "add", "H1", "--shop", "SHOP-1"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr[-800:]
    key = bytes.fromhex(added.stdout.split('key = "')[1].split('"')[0])
    log = tmp_path / "gw.log"
    gateway = GatewayProcess(db, broker.url, log, extra_args=["--verifiers", "2",
                                                              "--no-supervision", "--master-key-file",
                                                              str(key_file)]).start()
    acked = {"upto": 0}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"at-rest-{os.getpid()}", clean_session=True)

    def on_message(c, u, message):
        _, upto, _ = envelope.decode_ack(message.payload, key)  # Invalid on a MAC under another key
        acked["upto"] = max(acked["upto"], upto)

    client.on_message = on_message
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        client.subscribe(topics.topic("H1", topics.ACK), 1)
        records = chain("H1", 10, key=key)

        def first_acked() -> bool:
            client.publish(topics.topic("H1", topics.UP), batch("H1", 0, records[:2]), qos=1)
            return acked["upto"] >= 2

        wait_for(first_acked, 60, "the first ack", interval=0.5)
        client.publish(topics.topic("H1", topics.UP), batch("H1", 2, records[2:]), qos=1)
        wait_for(lambda: acked["upto"] >= 10, 30, "every record acked")
        assert gateway.proc.poll() is None
    finally:
        client.loop_stop()
        client.disconnect()
        gateway.stop()
    assert not (db.parent / AUTO_KEY_FILE).exists()  # the given key was used everywhere
    store = Store(db, key_file)
    try:
        assert store.count_records() == 10 and store.quarantined() == []
    finally:
        store.close()
    text = log.read_text("utf-8", "replace")
    assert "NO MASTER KEY CONFIGURED" not in text
    for secret in (master, key):
        assert secret.hex() not in text and secret.hex().upper() not in text
    assert mode(db) == 0o600 and mode(db.parent) == 0o700


# ---------------------------------------------------------------- case photos (gateway/supervision/cases.py)

def test_case_photos_are_0600_in_0700_directories(tmp_path):
    from gateway.supervision import cases, grid
    from gateway.store import users, violations
    from gateway.supervision.rules import config
    from tests.support.supervision import GRID, VILLAGE1

    now = 1748746800000
    conn = connect(tmp_path / "gw.db")
    try:
        grid.import_grid(conn, GRID)
        conn.execute("INSERT INTO terminals(id, key, shop) VALUES ('TA', '00', 'SHOP1')")
        users.add_user(conn, "v1", "village", VILLAGE1, "password-1", now)
        violations.report(conn, now, "banned_product_sold", "a", subject="S1", shop="SHOP1")
        cases.file_new_violations(conn, now, config.load())
        (case_id,) = [r[0] for r in conn.execute("SELECT id FROM cases")]
        photos = tmp_path / "gw.db.photos"
        cases.add_photo(conn, now + 1, users.user_by_name(conn, "v1"), case_id, b"\xff\xd8\xff\xe0" + b"0" * 100,
                        photos)
    finally:
        conn.close()
    made = [photos] + list(photos.rglob("*"))
    assert len(made) == 3
    for path in made:
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path
