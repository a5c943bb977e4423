"""The terminal ledger: append-only, signed and chained, durable, and refusing
new sales clearly on a full or read-only disk without losing old ones."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from firmware.ledger import Ledger, LedgerError, LedgerFull, export_lines
from protocols import envelope
from tests.records_factory import KEY, sale

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(tmp_path / "ledger.db", "T1", KEY, reserve_bytes=0)
    yield led
    led.close()


def test_records_are_numbered_from_one_signed_and_chained(ledger):
    stored = [ledger.append("sale", sale(n), 1000 + n) for n in range(1, 6)]
    assert [s.seq for s in stored] == [1, 2, 3, 4, 5]
    prev = envelope.GENESIS
    for s in stored:
        record = json.loads(s.text)
        digest, _ = envelope.verify_record(record, KEY)
        assert record["prev"] == prev and digest == s.digest
        prev = digest


def test_outbox_is_the_rows_above_the_watermark(ledger):
    for n in range(1, 11):
        ledger.append("sale", sale(n), n)
    assert [seq for seq, _ in ledger.pending(0, 3)] == [1, 2, 3]
    assert ledger.mark_acked(4)
    assert ledger.backlog == 6
    assert [seq for seq, _ in ledger.pending(ledger.acked, 100)] == [5, 6, 7, 8, 9, 10]
    assert not ledger.mark_acked(3)       # never backwards
    assert not ledger.mark_acked(11)      # never past what was written
    assert ledger.acked == 4


def test_only_the_watermark_commit_skips_the_flush(ledger):
    """An ack is committed without waiting for the disk (a lost watermark is a
    re-send); every sale after it is flushed again (synchronous=FULL = 2)."""
    conn = ledger.db.conn
    ledger.append("sale", sale(1), 1)
    seen = []
    conn.set_trace_callback(lambda sql: seen.append(sql) if sql.startswith("PRAGMA synchronous") else None)
    assert ledger.mark_acked(1)
    conn.set_trace_callback(None)
    assert seen == ["PRAGMA synchronous=NORMAL", "PRAGMA synchronous=FULL"]
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    ledger.append("sale", sale(2), 2)
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2 and ledger.acked == 1


def test_ledger_and_watermark_survive_reopening(tmp_path):
    path = tmp_path / "ledger.db"
    led = Ledger(path, "T1", KEY, reserve_bytes=0)
    last = [led.append("sale", sale(n), n) for n in range(1, 4)][-1]
    led.mark_acked(2)
    led.close()
    again = Ledger(path, "T1", KEY, reserve_bytes=0)
    assert (again.head, again.acked) == (3, 2)
    nxt = again.append("sale", sale(4), 4)
    assert json.loads(nxt.text)["prev"] == last.digest
    again.close()


def test_rows_cannot_be_updated_or_deleted_through_sqlite(ledger):
    ledger.append("sale", sale(1), 1)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        ledger.db.execute("UPDATE ledger SET record = 'x'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        ledger.db.execute("DELETE FROM ledger")
    assert ledger.head == 1 and len(list(ledger.rows())) == 1


def test_deleting_the_newest_rows_does_not_reuse_their_numbers(tmp_path):
    path = tmp_path / "ledger.db"
    led = Ledger(path, "T1", KEY, reserve_bytes=0)
    for n in range(1, 6):
        led.append("sale", sale(n), n)
    led.close()
    conn = sqlite3.connect(path)  # a tamperer who knows to drop the trigger
    conn.executescript("DROP TRIGGER ledger_no_delete; DELETE FROM ledger WHERE seq >= 4;")
    conn.close()
    led = Ledger(path, "T1", KEY, reserve_bytes=0)
    assert led.append("sale", sale(6), 6).seq == 6  # 4 and 5 stay missing: the gateway sees the gap
    led.close()


def test_a_ledger_of_another_terminal_is_refused(tmp_path):
    Ledger(tmp_path / "l.db", "T1", KEY).close()
    with pytest.raises(LedgerError) as err:
        Ledger(tmp_path / "l.db", "T2", KEY)
    assert err.value.code == "ledger_wrong_terminal"


def test_free_space_reserve_refuses_before_sqlite_runs_out(tmp_path):
    led = Ledger(tmp_path / "l.db", "T1", KEY, reserve_bytes=0)
    led.append("sale", sale(1), 1)
    led.reserve_bytes = 1 << 62  # more than any disk has
    with pytest.raises(LedgerFull) as err:
        led.append("sale", sale(2), 2)
    assert err.value.code == "ledger_disk_full"
    assert "存储空间" in err.value.text() and "storage is full" in err.value.text("en")
    assert led.head == 1
    led.close()


def test_invalid_record_is_refused_before_it_reaches_the_ledger(ledger):
    with pytest.raises(envelope.Invalid):
        ledger.append("sale", {"subject": "S1"}, 1)
    assert ledger.head == 0


def _unshare_works() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-rm", "true"], capture_output=True).returncode == 0


def test_full_then_read_only_disk_refuses_new_sales_and_keeps_every_old_row(tmp_path):
    """A real 2 MiB tmpfs in a private mount namespace: SQLite itself runs out
    of space, then the filesystem is remounted read-only."""
    if not _unshare_works():
        pytest.fail("this test needs `unshare -rm` (util-linux, user namespaces) to mount a small tmpfs")
    mount = tmp_path / "disk"
    mount.mkdir()
    script = (f"mount -t tmpfs -o size=2m tmpfs {mount} && "
              f"exec {sys.executable} -m tests.drills.ledger_on_small_disk {mount}")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=240)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["committed"] > 100
    assert result["full_error"]["code"] == "ledger_disk_full"
    assert result["second"] == "ledger_disk_full"
    assert result["head_after_full"] == result["last_seq"] == result["committed"]
    assert result["rows_after_full"] == result["committed"]
    assert result["ro_error"]["code"] == "ledger_read_only", result["ro_error"]
    assert result["rows_after_ro"] == result["committed"]
    assert result["seqs_contiguous"]


def test_ledger_export_cli_prints_one_record_per_line(tmp_path):
    led = Ledger(tmp_path / "l.db", "T1", KEY, reserve_bytes=0)
    texts = [led.append("sale", sale(n), n).text for n in range(1, 4)]
    led.close()
    proc = subprocess.run([sys.executable, "-m", "firmware", "ledger", "export", "--db", str(tmp_path / "l.db")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == texts
    assert list(export_lines(tmp_path / "l.db")) == texts


def test_ledger_export_cli_fails_clearly_on_a_missing_file(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "firmware", "ledger", "export", "--db", str(tmp_path / "nope.db")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1 and "cannot read ledger" in proc.stderr
