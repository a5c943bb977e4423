"""Verification in worker processes, so the gateway uses more than one core.

The MQTT network thread is the gateway's narrowest point: paho spends tens of
microseconds of interpreter time on every message, and anything else done in
the same process competes with it for the GIL. So the network thread only hands
each raw message to a verifier process (parse, schema, MAC: pure CPU), and the
verified batches come back to the single writer thread, which owns the
database. Messages of one terminal always go to the same verifier, so they are
stored in the order they arrived.

A verifier is a plain child process (`python -m gateway.verifier DB`) talking
length-prefixed frames over its stdin and stdout, so it does not depend on how
the parent was started. It holds no state but a cache of terminal keys read
from the database, and exits when its stdin closes (the gateway died). If it
dies, the messages it held were never acknowledged and terminals re-send them;
the pool starts a new one, and verifies in-process if that keeps failing.
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

_UP, _STATUS = b"U", b"S"
_LEN = struct.Struct("!I")
_HEADER = struct.Struct("!cH")
ROOT = Path(__file__).resolve().parents[1]


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


def worker_main(db_path: str) -> None:
    """The verifier process: raw messages in, verified items out, in order.
    Everything that arrived together is verified and answered in one write."""
    from gateway.ingest import encode_verified, verify_message
    from gateway.store import KeyCache, Store

    _batch_scheduling()

    key_for = KeyCache(Store(db_path))

    frames = _Frames(sys.stdin.fileno())
    out_fd = sys.stdout.fileno()
    while True:
        batch = frames.read()
        if batch is None:
            return
        items = []
        for frame in batch:
            kind, n = _HEADER.unpack_from(frame)
            topic = frame[_HEADER.size:_HEADER.size + n].decode()
            items.append(verify_message(kind == _STATUS, topic, frame[_HEADER.size + n:], key_for))
        data = encode_verified(items)
        view = memoryview(_LEN.pack(len(data)) + data)
        while view:
            view = view[os.write(out_fd, view):]


class _Worker:
    def __init__(self, db_path: str, deliver: Callable[[list], None]):
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.verifier", db_path],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0)
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.deliver = deliver
        self.reader = threading.Thread(target=self._collect, name="verifier-results", daemon=True)
        self.reader.start()

    def _collect(self) -> None:
        from gateway.ingest import decode_verified

        frames = _Frames(self.proc.stdout.fileno())
        while True:
            batch = frames.read()
            if batch is None:
                return
            for frame in batch:
                self.deliver(decode_verified(frame))

    def send(self, data: bytes) -> bool:
        try:
            self.proc.stdin.write(data)
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.reader.join(timeout=5)


class VerifierPool:
    def __init__(self, db_path: Path, workers: int, deliver: Callable[[list], None],
                 inline: Callable[[bool, str, bytes], None]):
        self.db_path = str(db_path)
        self.deliver = deliver
        self.inline = inline  # last resort when workers cannot be kept alive
        self._count = workers
        self._workers: list[_Worker | None] = []

    def start(self) -> None:
        self._workers = [_Worker(self.db_path, self.deliver) for _ in range(self._count)]

    def submit(self, status: bool, terminal: str, topic: str, payload: bytes) -> None:
        index = zlib.crc32(terminal.encode()) % len(self._workers)
        worker = self._workers[index]
        if worker is not None:
            with worker.lock:
                if worker.send(_frame(_STATUS if status else _UP, topic, payload)):
                    return
            # It died. Replace it, unless replacements die young too.
            young = time.monotonic() - worker.started < 5
            log.error("verifier %d stopped (exit %s)%s", index, worker.proc.poll(),
                      "; verifying in-process from now on" if young else "; starting a new one")
            self._workers[index] = None if young else _Worker(self.db_path, self.deliver)
            if self._workers[index] is not None and self._workers[index].send(
                    _frame(_STATUS if status else _UP, topic, payload)):
                return
        self.inline(status, topic, payload)

    def stop(self) -> None:
        for worker in self._workers:
            if worker is not None:
                worker.close()


if __name__ == "__main__":
    worker_main(sys.argv[1])
