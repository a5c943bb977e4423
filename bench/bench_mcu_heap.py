"""The smallest heap the card-only terminal sells in, as a board runs it:
its code frozen into the firmware (bytecode in flash, not in the heap).

The PyPI unix port loads the terminal from files, so its bytecode sits in
the heap (the 370K floor of tests/test_mcu_memory.py). An ESP32 firmware
freezes it. This bench runs a unix port built the same way, with
firmware/mcu/manifest.py frozen in, from a MicroPython source checkout:

    make -C mpy-cross
    UMQTT_LIB=$PWD/../agri/.venv/micropython-lib make -C ports/unix VARIANT=standard \\
        FROZEN_MANIFEST=/path/to/agri/firmware/mcu/manifest.py \\
        MICROPY_PY_SSL=0 MICROPY_PY_BTREE=0 MICROPY_PY_FFI=0 MPY_LIB_DIR=<any folder with a README.md>

(no TLS, btree or ffi: their sources are submodules the terminal does not
need). Then, for each heap size, a district with that terminal: the config
sync from empty, then one approved sale; the log's gc.mem_alloc() figures.

    .venv/bin/python bench/bench_mcu_heap.py --micropython ports/unix/build-standard/micropython \\
        [--heaps 300K,200K,150K,100K]

Target (issue 20): a sale in a 100K heap.
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
    try:
        d.start()
        d.wait_config()
        outcome = d.terminal.sell(d.cards["S-M-0001"], [{"product": fx.UREA[0], "packs": 1}])
    except Exception as e:     # a terminal that ran out of heap never gets there: that is the measurement
        outcome = f"failed: {type(e).__name__}"
    finally:
        d.close()
    log = d.terminal.log.read_text("utf-8", "replace")
    errors = re.findall(r"MemoryError: [^\n]*", log)
    return outcome, re.findall(r"mem alloc=\d+ free=\d+ peak=\d+", log) + errors[:1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--micropython", required=True, help="a unix port with firmware/mcu/manifest.py frozen in")
    parser.add_argument("--heaps", default="300K,200K,150K,100K")
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
    print(f"{'heap':>6}  {'outcome':24}  figures")
    for heap, outcome, figures in results:
        print(f"{heap:>6}  {outcome[:24]:24}  {'; '.join(figures)}")
    ok = any(h.upper() == "100K" and o.startswith("APPROVED") for h, o, _ in results)
    print("target a sale in a 100K heap:", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
