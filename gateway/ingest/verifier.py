"""Verification in worker processes, so the gateway uses more than one core.

The MQTT network thread is the gateway's narrowest point: paho spends tens of
microseconds of interpreter time on every message, and anything else done in
the same process competes with it for the GIL. So the network thread only hands
each raw message to a verifier process (parse, schema, MAC: pure CPU), and the
verified batches go straight to the writer process, which owns the
database (gateway/ingest/pipeline.py). Messages of one terminal always go to the same verifier, so they are
stored in the order they arrived.

A verifier is a plain child process (`python -m gateway.ingest.verifier DB`) talking
length-prefixed frames over its stdin and stdout, so it does not depend on how
the parent was started. It holds no state but a cache of terminal keys read
from the database, and exits when its stdin closes (the gateway died).

No message may stall the district's ingest, not even one that kills its
verifier (docs/protocol.md, "Quarantine"). So the parent keeps every message
it sends (`Verifier`) until the verifier has answered it, which the verifier
tells through two counters in a page of memory they share: the number of the
message it began last, and of the last one it has answered. The parent only
reads them, so this costs the network thread no system call. When a verifier
dies, a new one is started and gets what the dead one had not answered: the
message it was verifying when it died is sent again *alone* (verified and
answered on its own), the others as they were; a message that takes a
verifier down on its own is quarantined as `verifier_crashed`, unread.
"""

from __future__ import annotations

import collections
import logging
import mmap
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from gateway.ingest.verified import encode_verified, quarantine_item, verify_message
from gateway.store import KeyCache, Store

log = logging.getLogger(__name__)

_UP, _STATUS = b"U", b"S"
_CRASHED = b"Q"  # quarantine as `verifier_crashed` without reading it
# A lower-case kind (u, s, q) is the same message sent again after a crash:
# the verifier answers what it has so far, then this one alone.
_LEN = struct.Struct("!I")
_HEADER = struct.Struct("!cH")
_KIND_AT = _LEN.size  # offset of the kind byte in a frame as sent
_BEGUN = struct.Struct("=Q")  # at offset 0 of the shared page: the message begun last (numbered from 1)
_DONE = struct.Struct("=Q")   # at offset 8: the last message whose answer is written
_PROGRESS_SIZE = 16
MAX_HELD = 200_000  # messages kept for a dead verifier until its replacement takes them
MODULE = "gateway.ingest.verifier"
ROOT = Path(__file__).resolve().parents[2]


def _frame(kind: bytes, topic: str, payload: bytes) -> bytes:
    t = topic.encode()
    body = _HEADER.pack(kind, len(t)) + t + payload
    return _LEN.pack(len(body)) + body


class _Frames:
    """Length-prefixed frames from a pipe, read in large chunks: one read
    syscall brings every frame that is ready, not two syscalls per frame."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buf = bytearray()

    def read(self) -> list[bytes] | None:
        """The complete frames available (blocking until at least one); None at EOF."""
        while True:
            frames = []
            pos = 0
            while len(self.buf) - pos >= _LEN.size:
                (n,) = _LEN.unpack_from(self.buf, pos)
                if len(self.buf) - pos - _LEN.size < n:
                    break
                frames.append(bytes(self.buf[pos + _LEN.size:pos + _LEN.size + n]))
                pos += _LEN.size + n
            if pos:
                del self.buf[:pos]
            if frames:
                return frames
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                return None
            self.buf += chunk


def _batch_scheduling() -> None:
    """SCHED_BATCH for the verifier (Linux): the scheduler no longer lets it
    preempt the running task each time its pipe wakes it. Under a flood of
    small messages the network thread is the narrowest point and writes to
    the verifier for every message; with verifiers taking the core from it
    each time, two of them held the one-record-a-message rate on two cores
    to about 14,000 a second, against 20,000 to 25,000 without (measured
    with bench_ingest). The verifier has its pipe to catch up from. The
    writer keeps the normal policy: it wakes far less often, and acks wait
    for it. Nothing changes where the policy is missing."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):
        pass


def worker_main(db_path: str, progress_fd: int | None = None, verify=verify_message) -> None:
    """The verifier process: raw messages in, verified items out, in order.
    Everything that arrived together is verified and answered in one write.
    `progress_fd`: the page shared with the parent (see the module's doc).
    `verify`: the verification stage (a test passes one with a failpoint,
    tests/support/verifier_failpoints.py)."""
    _batch_scheduling()

    key_for = KeyCache(Store(db_path))
    progress = mmap.mmap(progress_fd, _PROGRESS_SIZE) if progress_fd is not None else bytearray(_PROGRESS_SIZE)
    begun = _BEGUN.pack_into

    frames = _Frames(sys.stdin.fileno())
    out_fd = sys.stdout.fileno()

    def answer(items: list, sources: list, number: int) -> None:
        if items:
            try:
                data = encode_verified(items)
            except Exception:  # one item that cannot cross: quarantine it, keep the others
                log.exception("verified items could not be encoded")
                data = encode_verified([_encodable(item, source) for item, source in zip(items, sources)])
            view = memoryview(_LEN.pack(len(data)) + data)
            while view:
                view = view[os.write(out_fd, view):]
        _DONE.pack_into(progress, 8, number)

    def _encodable(item, source):
        try:
            encode_verified([item])
            return item
        except Exception as err:
            return quarantine_item(source[0], "verify_failed", f"{type(err).__name__}: {err}"[:500], source[1])

    number = 0
    while True:
        batch = frames.read()
        if batch is None:
            return
        items, sources = [], []
        for frame in batch:
            number += 1
            kind, n = _HEADER.unpack_from(frame)
            alone = kind.islower()
            if alone:  # answer what came before it first: a death from here on is its own
                answer(items, sources, number - 1)
                items, sources = [], []
                kind = kind.upper()
            begun(progress, 0, number)
            topic = frame[_HEADER.size:_HEADER.size + n].decode(errors="replace")
            payload = frame[_HEADER.size + n:]
            if kind == _CRASHED:
                item = quarantine_item(topic, "verifier_crashed",
                                       "a verifier process died twice while verifying this message", payload)
            else:
                item = verify(kind == _STATUS, topic, payload, key_for)
            items.append(item)
            sources.append((topic, payload))
            if alone:
                answer(items, sources, number)
                items, sources = [], []
        answer(items, sources, number)


def _unframe(data: bytes) -> tuple[bytes, str, bytes]:
    """(kind, topic, payload) of a frame as sent."""
    kind, n = _HEADER.unpack_from(data, _KIND_AT)
    start = _KIND_AT + _HEADER.size
    return kind, data[start:start + n].decode(errors="replace"), data[start + n:]


def _rekind(data: bytes, kind: bytes) -> bytes:
    return data[:_KIND_AT] + kind + data[_KIND_AT + 1:]


class Verifier:
    """One verifier process, and the messages it has not answered yet.

    `stdout`: where its answers go (a pipe to the writer process, or PIPE to
    read them here). `on_exit(verifier)` is called from a watcher thread when
    the process ends, unless it was `retire`d first (stopped on purpose).
    `module`: what runs as the verifier (tests run it with a failpoint)."""

    def __init__(self, db_path: str, stdout, on_exit: Callable[["Verifier"], None], module: str = MODULE):
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self._page = tempfile.TemporaryFile(prefix="verifier-progress-")
        self._page.truncate(_PROGRESS_SIZE)
        self.progress = mmap.mmap(self._page.fileno(), _PROGRESS_SIZE)
        fd = self._page.fileno()
        self.proc = subprocess.Popen([sys.executable, "-m", module, db_path, str(fd)],
                                     stdin=subprocess.PIPE, stdout=stdout, env=env, bufsize=0, pass_fds=[fd])
        self.started = time.monotonic()
        self.retired = False
        self._sent: collections.deque = collections.deque()  # (number, frame, suspect), oldest first
        self._count = 0
        self._on_exit = on_exit
        threading.Thread(target=self._watch, name="verifier-watch", daemon=True).start()

    def _watch(self) -> None:
        self.proc.wait()
        if not self.retired:
            self._on_exit(self)

    def send(self, data: bytes, suspect: bool = False) -> bool:
        """Hand a frame to the process; kept until answered, even if the
        write fails (the process died: its replacement gets it)."""
        sent = self._sent
        if not self._count & 31 or len(sent) >= MAX_HELD:  # forget what it has answered, now and then
            done = _DONE.unpack_from(self.progress, 8)[0]
            while sent and sent[0][0] <= done:
                sent.popleft()
            if len(sent) >= MAX_HELD:
                log.error("verifier holds %d unanswered messages; message left unacknowledged (the terminal "
                          "re-sends)", len(sent))
                return False
        self._count += 1
        sent.append((self._count, data, suspect))
        try:
            self.proc.stdin.write(data)
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def began_nothing(self) -> bool:
        return _BEGUN.unpack_from(self.progress, 0)[0] == 0

    def unanswered(self, crashed: bool) -> list[tuple[bytes, bool]]:
        """What the dead process had not answered, as (frame, suspect) to
        send to its replacement in order. `crashed`: it died by itself, so
        the message it was verifying is suspect: sent again alone, or, if it
        already was alone, replaced by a quarantine frame."""
        begun = _BEGUN.unpack_from(self.progress, 0)[0]
        done = _DONE.unpack_from(self.progress, 8)[0]
        out = []
        for number, data, suspect in self._sent:
            if number <= done:
                continue
            if crashed and number == begun:
                kind, topic, _ = _unframe(data)
                if suspect:
                    log.error("message quarantined: it took down a verifier on its own topic=%s", topic)
                    data = _rekind(data, _CRASHED)
                else:
                    log.warning("message sent again alone: its verifier died on it topic=%s", topic)
                    data = _rekind(data, kind.lower())
                suspect = True
            out.append((data, suspect))
        return out

    def retire(self) -> None:
        """Stop it on purpose: close its input, so it answers what it has and exits."""
        self.retired = True
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def kill(self) -> None:
        self.retired = True
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def close(self, timeout: float = 5.0) -> None:
        self.retire()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.progress.close()
        self._page.close()


if __name__ == "__main__":
    worker_main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None)
