"""The kiosk with a failpoint, for tests only:

    python -m tests.support.kiosk_failpoints --pause-before-commit PATH -- --config FILE

runs exactly what `python -m terminal_ui --config FILE` runs, except that its
agent holds every sale and refusal between the decision and the ledger commit:
it writes PATH (`{"type", "sale_id"}`) and waits there, so a test can kill the
process at that very point (terminal_ui/kiosk/checkout.py: the screen never says "approved"
for a sale the ledger does not hold). The shipped terminal has no switch for it,
neither in its config nor in its environment: the failpoint is built in here.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from pathlib import Path

from firmware.agent import Agent
from terminal_ui.kiosk import Kiosk
from terminal_ui.__main__ import main as kiosk_main

log = logging.getLogger(__name__)

HOLD_S = 600.0      # longer than any test: the test kills the process first


class HeldBeforeCommit(Agent):
    """`Agent.record` is the one door into the ledger; a sale or refusal is
    held in front of it, after `Counter.checkout` has decided."""

    def __init__(self, config, marker: Path, **kwargs):
        super().__init__(config, **kwargs)
        self.marker = Path(marker)
        self._release = threading.Event()       # never set: the hold ends with the process

    def record(self, rtype, body):
        if rtype in ("sale", "refusal"):
            tmp = self.marker.with_name(self.marker.name + ".tmp")
            tmp.write_text(json.dumps({"type": rtype, "sale_id": body.get("sale_id")}), "utf-8")
            os.replace(tmp, self.marker)        # the test never reads half a marker
            log.warning("failpoint: holding %s before commit sale=%s", rtype, body.get("sale_id"))
            self._release.wait(HOLD_S)
        return super().record(rtype, body)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.kiosk_failpoints", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pause-before-commit", type=Path, required=True, metavar="PATH",
                        help="written when a decision is held before its commit")
    parser.add_argument("kiosk_args", nargs=argparse.REMAINDER, help="-- then `python -m terminal_ui` arguments")
    args = parser.parse_args(argv)
    rest = args.kiosk_args[1:] if args.kiosk_args[:1] == ["--"] else args.kiosk_args
    marker = args.pause_before_commit

    def make_kiosk(config, settings):
        return Kiosk(config, settings, agent=HeldBeforeCommit(config, marker))

    return kiosk_main(rest, prog="python -m tests.support.kiosk_failpoints", make_kiosk=make_kiosk)


if __name__ == "__main__":
    sys.exit(main())
