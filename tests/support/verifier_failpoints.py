"""The verifier with a failpoint, for tests only:

    python -m tests.support.verifier_failpoints DB PROGRESS_FD

runs exactly what `python -m gateway.ingest.verifier DB PROGRESS_FD` runs, except
that a message whose payload holds `HOLD` is held before it is verified: the
process writes its pid to `DB.held` and waits there, so a test can kill it
while it holds that very message (gateway/ingest/verifier.py: the message a verifier
died on is sent again alone, then quarantined as `verifier_crashed`). The
gateway has no switch for it; tests pass this module as `verifier_module`.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from gateway.ingest import verified, verifier

HOLD = b"HOLD-THE-VERIFIER"
HOLD_S = 600.0  # longer than any test: the test kills the process first


def held_path(db: str | Path) -> Path:
    return Path(str(db) + ".held")


def main(argv: list[str]) -> None:
    db, progress_fd = argv[0], int(argv[1])
    verify = verified.verify_message

    def verify_message(is_status, topic, payload, key_for):
        if HOLD in payload:
            marker = held_path(db)
            tmp = marker.with_name(marker.name + ".tmp")
            tmp.write_text(str(os.getpid()))
            os.replace(tmp, marker)  # the test never reads half a pid
            threading.Event().wait(HOLD_S)
        return verify(is_status, topic, payload, key_for)

    verifier.worker_main(db, progress_fd, verify=verify_message)


if __name__ == "__main__":
    main(sys.argv[1:])
