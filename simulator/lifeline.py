"""Children that die with the simulator.

A demo or benchmark stopped with SIGKILL (or a test runner killed at its
time limit) cannot stop its broker and gateway, and they went on running,
holding ports and a CPU. `bind` is a `preexec_fn` asking Linux to send the
child SIGTERM when the thread that started it ends (prctl PR_SET_PDEATHSIG);
elsewhere it does nothing. Start children from a thread that lives as long as
they should: the main thread, in practice.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys

PR_SET_PDEATHSIG = 1

_prctl = None
if sys.platform.startswith("linux"):
    try:
        _prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        _prctl = None


def bind() -> None:
    """In the child, between fork and exec: loaded in the parent, so it only calls."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
