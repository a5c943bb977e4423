"""The MicroPython terminal's flash ledger (firmware/mcu/ledger.py) on the real
MicroPython unix port: a power cut at every byte of the last record leaves a
ledger that opens, keeps every earlier record byte for byte, marks the torn
tail and goes on with an unbroken chain (checked again under CPython with
protocols/envelope.py); a full flash (littlefs, as on the ESP32, on a RAM block
device) refuses new sales and loses nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from protocols import envelope
from tests.support import mcu

KEY = bytes(range(32))
SALE = {"subject": "S-1", "items": [{"product": "PD20180123", "packs": 1, "spec": "001"}], "identity": "card",
        "mode": "offline", "clerk": "c1", "sale_id": "T001-1", "consumption": {"fert_n": 100}}

OPEN = f"""
import json, os, ledger
KEY = {KEY!r}
SALE = json.loads({json.dumps(SALE)!r})
def make(path, checkpoint=4):
    return ledger.Ledger(path, "T001", KEY, checkpoint=checkpoint).open()
"""


def good_records(directory: Path) -> list[dict]:
    """The log read back under CPython: torn ranges skipped, every other line
    a record with a good MAC, seq 1, 2, 3... and an unbroken chain."""
    raw = (directory / "ledger.log").read_bytes()
    state = json.loads((directory / "ledger.state").read_text())
    out, prev, offset = [], envelope.GENESIS, 0
    for line in raw.split(b"\n")[:-1]:
        here, offset = offset, offset + len(line) + 1
        if any(start <= here < end for start, end in state["torn"]) or not line:
            continue
        record = json.loads(line)
        envelope.verify_record(record, KEY)
        assert record["seq"] == len(out) + 1 and record["prev"] == prev, (record["seq"], here)
        prev = envelope.digest(record)
        out.append(record)
    assert raw.endswith(b"\n")
    return out


def test_power_cut_at_every_byte_of_the_last_record(tmp_path):
    base = tmp_path / "base"
    written = mcu.run(OPEN + f"""
L = make({str(base)!r})
for i in range(5):
    L.append("sale", SALE)
print("HEAD", L.head)
""")
    assert written.lines("HEAD") == ["5"], written.stdout + written.stderr
    log = (base / "ledger.log").read_bytes()
    lines = log.split(b"\n")[:-1]
    start = len(log) - len(lines[-1]) - 1          # record 5 is also a checkpoint (every 4: 1, 5)
    before = log[:start]
    cuts = list(range(start, len(log) + 1))
    for cut in cuts:
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / "ledger.log").write_bytes(log[:cut])
        shutil.copy(base / "ledger.state", d / "ledger.state")
    dirs = [str(tmp_path / f"cut{cut}") for cut in cuts]
    result = mcu.run(OPEN + f"""
for d in {dirs!r}:
    L = make(d)
    opened, torn = L.head, len(L.torn)
    L.append("sale", SALE)
    L.close()
    again = make(d)
    print("CUT", d, opened, torn, again.head, len(again.records()))
""", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    seen = {line.split()[0]: [int(x) for x in line.split()[1:]] for line in result.lines("CUT")}
    assert len(seen) == len(cuts)
    for cut in cuts:
        d = tmp_path / f"cut{cut}"
        opened, torn, head, count = seen[str(d)]
        whole = cut >= len(log) - 1               # the record is all there (its newline may be missing)
        if cut == start or whole:
            assert torn == 0, cut
            assert opened == (5 if whole else 4), cut
        else:
            assert torn == 1, cut                 # a torn piece: marked, and an event record says so
            assert opened == 5, cut
        assert head == opened + 1 and count == head, cut
        assert (d / "ledger.log").read_bytes().startswith(before), cut   # records 1-4 untouched
        records = good_records(d)
        assert len(records) == head, cut
        assert [r["type"] for r in records[:4]] == ["sale"] * 4
        if torn:
            assert records[4]["type"] == "event" and records[4]["body"]["code"] == "ledger_torn_tail"


def test_watermark_survives_restart_and_never_moves_back_or_past_the_head(tmp_path):
    result = mcu.run(OPEN + f"""
L = make({str(tmp_path / "w")!r})
for i in range(6):
    L.append("sale", SALE)
print("MOVES", L.mark_acked(3), L.mark_acked(2), L.mark_acked(7), L.mark_acked(6))
L.close()
L = make({str(tmp_path / "w")!r})
print("AFTER", L.acked, L.head, [s for s, _ in L.pending(3, 2)])
""")
    assert result.lines("MOVES") == ["True False False True"], result.stdout
    assert result.lines("AFTER") == ["6 6 [4, 5]"]


def test_a_half_written_state_file_is_ignored(tmp_path):
    d = tmp_path / "s"
    first = mcu.run(OPEN + f"""
L = make({str(d)!r})
for i in range(3):
    L.append("sale", SALE)
L.mark_acked(2)
""")
    assert first.returncode == 0, first.stdout
    (d / "ledger.state.new").write_text('{"acked": 3, "checkp')   # a power cut before the rename
    result = mcu.run(OPEN + f"""
L = make({str(d)!r})
print("STATE", L.acked, L.head)
""")
    assert result.lines("STATE") == ["2 3"], result.stdout


RAM_FLASH = """
class RamFlash:
    # A block device in RAM with the interface littlefs mounts (os.AbstractBlockDev).
    def __init__(self, blocks, size=512):
        self.size = size
        self.data = bytearray(blocks * size)
    def readblocks(self, n, buf, offset=0):
        at = n * self.size + offset
        buf[:] = self.data[at:at + len(buf)]
    def writeblocks(self, n, buf, offset=None):
        if offset is None:
            offset = 0
        at = n * self.size + offset
        self.data[at:at + len(buf)] = buf
    def ioctl(self, op, arg):
        if op == 4:
            return len(self.data) // self.size
        if op == 5:
            return self.size
        if op == 6:
            for i in range(self.size):
                self.data[arg * self.size + i] = 0xFF
            return 0
        return 0
"""


def test_full_flash_refuses_new_sales_and_loses_none(tmp_path):
    result = mcu.run(OPEN + RAM_FLASH + """
import vfs
dev = RamFlash(96)
vfs.VfsLfs2.mkfs(dev)
vfs.mount(vfs.VfsLfs2(dev), "/flash")
L = ledger.Ledger("/flash/ledger", "T001", KEY, reserve=2048).open()
approved = []
refused = None
for i in range(200):
    try:
        approved.append(L.append("sale", SALE))
    except ledger.LedgerFull as err:
        refused = err.code
        break
print("APPROVED", len(approved), approved == list(range(1, len(approved) + 1)))
print("REFUSED", refused)
try:
    L.append("sale", SALE)
    print("AGAIN appended")
except ledger.LedgerFull as err:
    print("AGAIN", err.code)
L.close()
L = ledger.Ledger("/flash/ledger", "T001", KEY, reserve=2048).open()
print("REOPENED", L.head, len(L.records()), len(L.torn))
""")
    assert result.returncode == 0, result.stdout + result.stderr
    count, in_order = result.lines("APPROVED")[0].split()
    assert int(count) >= 5 and in_order == "True"   # it sold until the flash was nearly full
    assert result.lines("REFUSED") == ["ledger_disk_full"]
    assert result.lines("AGAIN") == ["ledger_disk_full"]
    assert result.lines("REOPENED") == [f"{count} {count} 0"]
