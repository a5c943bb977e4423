"""Ingest as a pipeline of processes: network → verifier → writer.

paho spends tens of microseconds of interpreter time on every message, so in
one process the network thread, verification and the database writer take
turns on the GIL and none runs at full speed. Here each stage is a process:

- the network process (the gateway's main process) only frames each raw
  message onto the verifier's stdin, and publishes the acks the writer
  sends back;
- the verifiers (`python -m gateway.verifier DB`, `--verifiers` of them)
  parse and check the messages (pure CPU) and write the verified items,
  as msgpack, straight into a pipe the writer reads;
- the writer (`python -m gateway.ingest_process DB FDS`) is one thread: it
  reads whatever is waiting on its pipes, stores it in one transaction
  (`Ingest.process`), and writes one small frame per acknowledgement.

A terminal's messages always go through the same verifier, so the writer sees
them in arrival order. If either
child dies, whatever was not committed was never acknowledged, so terminals
send it again; the network process starts a fresh pipeline, and the writer
reloads its state from the database.
"""

from __future__ import annotations

import logging
import os
import select
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Callable

from gateway.verifier import _LEN, _STATUS, _UP, _Frames, _frame

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
_ACK = struct.Struct("!QQ")  # upto, seen + 1 (0: no seen)


def writer_main(db_path: str, in_fds: list[int]) -> None:
    """The writer stage: verified items in (one pipe per verifier), acks out (stdout)."""
    from gateway.ingest import Ingest, decode_verified
    from gateway.store import Store

    out_fd = sys.stdout.fileno()

    def publish_ack(terminal: str, upto: int, seen: int | None) -> None:
        body = _ACK.pack(upto, 0 if seen is None else seen + 1) + terminal.encode()
        data = memoryview(_LEN.pack(len(body)) + body)
        while data:
            data = data[os.write(out_fd, data):]

    store = Store(db_path)
    ingest = Ingest(store, publish_ack, verifiers=0)  # no writer thread: this loop is the writer
    readers = {fd: _Frames(fd) for fd in in_fds}

    def waiting() -> list[int]:
        buffered = [fd for fd, r in readers.items() if r.buf]
        return buffered or select.select(list(readers), [], [], 0)[0]

    def idle() -> bool:
        return not waiting()

    while readers:
        ready = waiting() or select.select(list(readers), [], [], 0.02 if ingest.acks_pending() else None)[0]
        if not ready:
            ingest.send_due_acks(force=True)  # quiet now: nothing may wait for its ack
            continue
        group = []
        for fd in ready:
            batch = readers[fd].read()
            if batch is None:  # that verifier has finished (or died): take the others' last items
                del readers[fd]
                continue
            for frame in batch:
                group.extend(decode_verified(frame))
        if group:
            ingest.process(group, idle)
        if not readers:
            ingest.send_due_acks(force=True)
            store.close()
            return


def _widen(pipe) -> None:
    """Give a pipe room for a burst (Linux: up to fs.pipe-max-size, 1 MiB by
    default), so one stage's fsync does not stall the stage before it."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), 1031, 1 << 20)  # F_SETPIPE_SZ
    except (ImportError, OSError):
        pass


class IngestProcess:
    """The network process's side: same calls as `Ingest` for the network thread."""

    def __init__(self, db_path: str | Path, publish_ack: Callable[[str, int, int | None], None],
                 key_for: Callable[[str], bytes | None], verifiers: int = 1):
        self.db_path = str(db_path)
        self.publish_ack = publish_ack
        self.key_for = key_for  # the authorization service checks MACs in this process
        self.count = max(1, verifiers)
        self._lock = threading.Lock()
        self._verifiers: list[subprocess.Popen] = []
        self._writer: subprocess.Popen | None = None
        self._started = 0.0
        self._stopping = False

    def start(self) -> None:
        self._spawn()

    def _spawn(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self._verifiers = [subprocess.Popen([sys.executable, "-m", "gateway.verifier", self.db_path],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0)
                           for _ in range(self.count)]
        fds = [v.stdout.fileno() for v in self._verifiers]
        for v in self._verifiers:
            _widen(v.stdin)
            _widen(v.stdout)
        self._writer = subprocess.Popen(
            [sys.executable, "-m", "gateway.ingest_process", self.db_path, ",".join(map(str, fds))],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env, bufsize=0, pass_fds=fds)
        _widen(self._writer.stdout)
        for v in self._verifiers:
            v.stdout.close()  # the writer holds the read ends now
        self._started = time.monotonic()
        threading.Thread(target=self._acks, args=(self._writer,), name="ingest-acks", daemon=True).start()

    def _acks(self, writer: subprocess.Popen) -> None:
        frames = _Frames(writer.stdout.fileno())
        while True:
            batch = frames.read()
            if batch is None:
                if not self._stopping:
                    log.error("ingest writer exited (%s); unacknowledged records will be re-sent", writer.poll())
                return
            for frame in batch:
                upto, seen = _ACK.unpack_from(frame)
                try:
                    self.publish_ack(frame[_ACK.size:].decode(), upto, seen - 1 if seen else None)
                except Exception:
                    log.exception("ack publish failed")

    def _send(self, kind: bytes, terminal: str, topic: str, payload: bytes) -> None:
        """To the verifier for this terminal: one terminal's messages always
        take the same path, so the writer sees them in arrival order."""
        data = _frame(kind, topic, payload)
        with self._lock:
            verifier = self._verifiers[zlib.crc32(terminal.encode()) % len(self._verifiers)]
            try:
                verifier.stdin.write(data)
                return
            except (BrokenPipeError, OSError, ValueError):
                if self._stopping:
                    return
            if time.monotonic() - self._started < 1.0:
                time.sleep(1.0)  # don't spin if the pipeline dies at once
            log.error("ingest pipeline broken (verifiers %s, writer %s); starting a new one",
                      [v.poll() for v in self._verifiers], self._writer.poll())
            self._kill()
            self._spawn()
            verifier = self._verifiers[zlib.crc32(terminal.encode()) % len(self._verifiers)]
            try:
                verifier.stdin.write(data)
            except (BrokenPipeError, OSError, ValueError):
                log.error("ingest pipeline unavailable; message left unacknowledged (the terminal re-sends)")

    def _kill(self) -> None:
        for proc in (*self._verifiers, self._writer):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    def submit_batch(self, topic: str, terminal: str, payload: bytes) -> None:
        self._send(_UP, terminal, topic, bytes(payload))

    def submit_status(self, terminal: str, payload: bytes) -> None:
        self._send(_STATUS, terminal, f"agri/v1/t/{terminal}/status", bytes(payload))

    def stop(self) -> None:
        """Close the pipeline's input; the verifier finishes, then the writer
        commits what it has and exits."""
        self._stopping = True
        with self._lock:
            for v in self._verifiers:
                try:
                    v.stdin.close()
                except OSError:
                    pass
        for proc in (*self._verifiers, self._writer):
            if proc is None:
                continue
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    writer_main(sys.argv[1], [int(fd) for fd in sys.argv[2].split(",")])
