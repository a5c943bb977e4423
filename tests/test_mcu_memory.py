"""What the card-only terminal costs a board: the frozen code (mpy-cross, for
the ESP32's Xtensa) and the heap it runs in (`micropython -X heapsize=...`,
with the gc.mem_alloc() figures the terminal logs after each sale). The
figures are printed (pytest -s) and bounded, so a change that makes either
grow past its budget fails here; docs/mcu.md "Memory and size" gives them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


from tests.support import mcu
from tests.support import quota_fixtures as fx
from tests.support.mcu_district import McuDistrict

# What the terminal imports (firmware/mcu and the protocols modules it pulls in).
PROTOCOLS = ("__init__", "authz", "canonical", "card", "catalogue", "configsync", "envelope", "facegallery",
             "pn532", "pn532host", "policy", "reasons", "records", "schema", "topics")
FROZEN_BUDGET = 160 * 1024   # bytes of .mpy: a fraction of an ESP32's 4 MB flash
HEAP = "800K"                # headroom over the 420K floor of the 64-bit unix port from source (docs/mcu.md)


def mpy_cross() -> str:
    return str(Path(sys.executable).with_name("mpy-cross"))


def frozen_sizes(tmp_path: Path) -> dict[str, int]:
    sources = sorted(mcu.MCU.glob("*.py")) + [mcu.ROOT / "protocols" / f"{name}.py" for name in PROTOCOLS]
    sources.append(mcu.LIB / "umqtt" / "simple.py")
    sizes = {}
    for source in sources:
        out = tmp_path / (source.parent.name + "-" + source.stem + ".mpy")
        subprocess.run([mpy_cross(), "-march=xtensawin", "-o", str(out), str(source)], check=True)
        sizes[f"{source.parent.name}/{source.name}"] = out.stat().st_size
    return sizes


def test_frozen_code_fits_its_budget(tmp_path):
    sizes = frozen_sizes(tmp_path)
    groups = {"firmware/mcu": 0, "protocols": 0, "umqtt": 0}
    for name, size in sizes.items():
        groups["firmware/mcu" if name.startswith("mcu/") else name.split("/")[0]] += size
    print("frozen .mpy bytes:", groups, "total", sum(groups.values()))
    assert groups["firmware/mcu"] > 10_000 and groups["protocols"] > 50_000   # it did compile the code
    assert sum(groups.values()) < FROZEN_BUDGET


def test_terminal_sells_online_and_offline_within_its_heap(tmp_path):
    d = McuDistrict(tmp_path / "district", heap=HEAP).start()
    try:
        d.wait_config()
        assert d.terminal.sell(d.cards["S-M-0001"], [{"product": fx.UREA[0], "packs": 1}]).startswith("APPROVED")
        d.gateway.kill()
        assert d.terminal.sell(d.cards["S-M-0001"], [{"product": fx.UREA[0], "packs": 1}]).startswith("APPROVED")
    finally:
        d.close()
    figures = [tuple(map(int, m)) for m in re.findall(r"mem alloc=(\d+) free=(\d+) peak=(\d+)", d.terminal.log.read_text())]
    assert len(figures) == 2
    print("heap %s: after each sale (alloc, free, sampled peak):" % HEAP, figures)
    assert all(alloc < 275 * 1024 for alloc, _, _ in figures)   # what stays after a sale (246-252K), 64-bit objects
    assert "MemoryError" not in d.terminal.log.read_text()


# measured floor from source of receiving the config sync cleanly (docs/mcu.md):
# 600K before canonical.feed, 500K until the shared PN532 host side and the
# voids and returns added ~7 KB of code, 520K until the gateway sent smaller
# chunks and protocols stopped keeping what it made lazily (400K fails at start)
SYNC_HEAP = "420K"


def test_terminal_receives_the_config_sync_and_sells_in_420K(tmp_path):
    """From an empty config directory: every section pushed, chunk by chunk,
    each chunk's MAC checked over canonical bytes fed to the hash piece by
    piece (protocols.canonical.feed). Building each chunk's canonical text
    whole ran a 500K heap out (MemoryError in the sync, no sale)."""
    d = McuDistrict(tmp_path / "district", heap=SYNC_HEAP).start()
    try:
        d.wait_config()
        assert d.terminal.sell(d.cards["S-M-0001"], [{"product": fx.UREA[0], "packs": 1}]).startswith("APPROVED")
    finally:
        d.close()
    assert "MemoryError" not in d.terminal.log.read_text()


# measured floor from bytecode (docs/mcu.md): 320K; 310K runs out reading a
# config chunk (370K with 16,000-character chunks and the schema cache)
BYTECODE_HEAP = "320K"


def test_terminal_from_bytecode_receives_the_config_sync_and_sells_in_320K(tmp_path):
    """The same from mpy-cross bytecode (tests/support/mcu.bytecode_tree), the
    way a board loads the code without freezing it: 100K less than from
    source (420K), where 400K fails at start-up importing the code. 400K before the
    catalogue was indexed an entry at a time (sync._index_catalogue: parsed
    whole it took ~105 KB) and chunks were parsed from their bytes."""
    main = mcu.bytecode_tree(tmp_path / "mpy")
    d = McuDistrict(tmp_path / "district", heap=BYTECODE_HEAP, main=main).start()
    try:
        d.wait_config()
        assert d.terminal.sell(d.cards["S-M-0001"], [{"product": fx.UREA[0], "packs": 1}]).startswith("APPROVED")
    finally:
        d.close()
    log = d.terminal.log.read_text()
    assert "MemoryError" not in log
    print("bytecode, heap %s:" % BYTECODE_HEAP, re.findall(r"mem alloc=\d+ free=\d+ peak=\d+", log))
