"""The smallest heap the card-only terminal sells in, as a board runs it:
its code frozen into the firmware (bytecode in flash, not in the heap).

The PyPI unix port loads the terminal from files, so its bytecode sits in
the heap (the 320K floor of tests/test_mcu_memory.py, 64-bit). An ESP32 firmware
freezes it. This bench runs a unix port built the same way, with
firmware/mcu/manifest.py frozen in, from a MicroPython source checkout:

    make -C mpy-cross
    UMQTT_LIB=/path/to/agri/.venv/micropython-lib make -C ports/unix VARIANT=standard \\
        BUILD=build-heap PROG=micropython-heap CC="gcc -m32" LD="ld -m elf_i386" \\
        FROZEN_MANIFEST=/path/to/agri/firmware/mcu/manifest.py \\
        MICROPY_PY_SSL=0 MICROPY_PY_BTREE=0 MICROPY_PY_FFI=0 MPY_LIB_DIR=<any folder with a README.md>

(32-bit, `gcc -m32`, as the ESP32's port is: objects there are half their
size on the 64-bit port; no TLS, btree or ffi: their sources are submodules
the terminal does not need; rebuild after every change to firmware/mcu or
protocols, which are frozen in). Then, for each heap size, a district with
that terminal: the config sync from empty, then a sale approved online and one approved offline (the
gateway killed); the log's gc.mem_alloc() figures after each (`mem alloc=...
peak=...`: in use after the sale and a gc.collect(), and the largest figure
sampled between steps).

    .venv/bin/python bench/bench_mcu_heap.py --micropython ports/unix/build-heap/micropython-heap \\
        [--heaps 150K,100K,90K,80K]

Target (issue 20): a sale in a 100K heap. A heap is too small when the log
shows a MemoryError or a sale does not come back; the sampled peak is no
floor (MicroPython collects only when an allocation finds no room, so it
climbs near the heap size whatever the heap).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.progress import Progress  # noqa: E402


def lone_main(dest: Path) -> Path:
    """main.py alone in a tree, so every other module comes from the frozen image."""
    (dest / "firmware" / "mcu").mkdir(parents=True)
    shutil.copy(ROOT / "firmware" / "mcu" / "main.py", dest / "firmware" / "mcu" / "main.py")
    return dest / "firmware" / "mcu" / "main.py"


def attempt(heap: str, main: Path, work: Path) -> tuple[str, list[str]]:
    from tests.support import quota_fixtures as fx
    from tests.support.mcu_district import McuDistrict

    d = McuDistrict(work / f"district-{heap}", heap=heap, main=main)
    outcome = ""
    try:
        d.start()
        d.wait_config()
        outcome = d.terminal.sell(d.cards["S-M-0001"], [{"product": fx.UREA[0], "packs": 1}])
        d.gateway.kill()       # the second sale decided offline: the subjects and balances sections read
        outcome += ", " + d.terminal.sell(d.cards["S-M-0001"], [{"product": fx.UREA[0], "packs": 1}])
    except Exception as e:     # a terminal that ran out of heap never gets there: that is the measurement
        outcome = (outcome + ", " if outcome else "") + f"failed: {type(e).__name__}"
    finally:
        d.close()
    log = d.terminal.log.read_text("utf-8", "replace")
    errors = re.findall(r"MemoryError: [^\n]*", log)
    return outcome, re.findall(r"mem alloc=\d+ free=\d+ peak=\d+", log) + errors[:1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--micropython", required=True, help="a unix port with firmware/mcu/manifest.py frozen in")
    parser.add_argument("--heaps", default="150K,100K,90K,80K")
    args = parser.parse_args()
    os.environ["MICROPYTHON"] = str(Path(args.micropython).resolve())
    work = Path(tempfile.mkdtemp(prefix="bench-mcu-heap-"))
    main_py = lone_main(work / "tree")
    heaps = args.heaps.split(",")
    results = []
    with Progress() as progress:
        task = progress.add_task("heaps", total=len(heaps))
        for heap in heaps:
            results.append((heap, *attempt(heap, main_py, work)))
            progress.advance(task)
    print(f"{'heap':>6}  {'outcome':30}  figures")
    for heap, outcome, figures in results:
        print(f"{heap:>6}  {outcome[:30]:30}  {'; '.join(figures)}")
    ok = any(h.upper() == "100K" and o.count("APPROVED") == 2 for h, o, _ in results)
    print("target a sale in a 100K heap:", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
