"""Ingest as a pipeline of processes: network → verifier → writer.

paho spends tens of microseconds of interpreter time on every message, so in
one process the network thread, verification and the database writer take
turns on the GIL and none runs at full speed. Here each stage is a process:

- the network process (the gateway's main process) only frames each raw
  message onto the verifier's stdin, and publishes the acks the writer
  sends back;
- the verifier (`python -m gateway.verifier DB`) parses and checks the
  messages (pure CPU) and writes the verified items, pickled, straight into
  the writer's stdin;
- the writer (`python -m gateway.ingest_process DB`) is one thread: it reads
  whatever is waiting, stores it in one transaction (`Ingest.process`), and
  writes one small frame per acknowledgement.

Messages of all terminals flow through the pipeline in arrival order. If either
child dies, whatever was not committed was never acknowledged, so terminals
send it again; the network process starts a fresh pipeline, and the writer
reloads its state from the database.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from gateway.verifier import _LEN, _STATUS, _UP, _Frames, _frame

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
_ACK = struct.Struct("!QQ")  # upto, seen + 1 (0: no seen)


def writer_main(db_path: str) -> None:
    """The writer stage: verified items in (stdin), acks out (stdout)."""
    from gateway.ingest import Ingest
    from gateway.store import Store

    out_fd = sys.stdout.fileno()

    def publish_ack(terminal: str, upto: int, seen: int | None) -> None:
        body = _ACK.pack(upto, 0 if seen is None else seen + 1) + terminal.encode()
        data = memoryview(_LEN.pack(len(body)) + body)
        while data:
            data = data[os.write(out_fd, data):]

    store = Store(db_path)
    ingest = Ingest(store, publish_ack, verifiers=0)  # no writer thread: this loop is the writer
    in_fd = sys.stdin.fileno()
    frames = _Frames(in_fd)

    def idle() -> bool:
        return not frames.buf and not select.select([in_fd], [], [], 0)[0]

    while True:
        ready = select.select([in_fd], [], [], 0.02 if ingest.acks_pending() else None)[0]
        if not ready and not frames.buf:
            ingest.send_due_acks(force=True)  # quiet now: nothing may wait for its ack
            continue
        batch = frames.read()
        if batch is None:
            break
        group = []
        for frame in batch:
            group.extend(pickle.loads(frame))
        ingest.process(group, idle)
    ingest.send_due_acks(force=True)
    store.close()


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
                 key_for: Callable[[str], bytes | None]):
        self.db_path = str(db_path)
        self.publish_ack = publish_ack
        self.key_for = key_for  # the authorization service checks MACs in this process
        self._lock = threading.Lock()
        self._verifier: subprocess.Popen | None = None
        self._writer: subprocess.Popen | None = None
        self._started = 0.0
        self._stopping = False

    def start(self) -> None:
        self._spawn()

    def _spawn(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self._verifier = subprocess.Popen([sys.executable, "-m", "gateway.verifier", self.db_path],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0)
        self._writer = subprocess.Popen([sys.executable, "-m", "gateway.ingest_process", self.db_path],
                                        stdin=self._verifier.stdout, stdout=subprocess.PIPE, env=env, bufsize=0)
        for pipe in (self._verifier.stdin, self._verifier.stdout, self._writer.stdout):
            _widen(pipe)
        self._verifier.stdout.close()  # the writer holds the read end now
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

    def _send(self, kind: bytes, topic: str, payload: bytes) -> None:
        data = _frame(kind, topic, payload)
        with self._lock:
            try:
                self._verifier.stdin.write(data)
                return
            except (BrokenPipeError, OSError, ValueError):
                if self._stopping:
                    return
            if time.monotonic() - self._started < 1.0:
                time.sleep(1.0)  # don't spin if the pipeline dies at once
            log.error("ingest pipeline broken (verifier %s, writer %s); starting a new one",
                      self._verifier.poll(), self._writer.poll())
            self._kill()
            self._spawn()
            try:
                self._verifier.stdin.write(data)
            except (BrokenPipeError, OSError, ValueError):
                log.error("ingest pipeline unavailable; message left unacknowledged (the terminal re-sends)")

    def _kill(self) -> None:
        for proc in (self._verifier, self._writer):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    def submit_batch(self, topic: str, terminal: str, payload: bytes) -> None:
        self._send(_UP, topic, bytes(payload))

    def submit_status(self, terminal: str, payload: bytes) -> None:
        self._send(_STATUS, f"agri/v1/t/{terminal}/status", bytes(payload))

    def children(self) -> list[int]:
        return [p.pid for p in (self._verifier, self._writer) if p is not None]

    def stop(self) -> None:
        """Close the pipeline's input; the verifier finishes, then the writer
        commits what it has and exits."""
        self._stopping = True
        with self._lock:
            if self._verifier is None:
                return
            try:
                self._verifier.stdin.close()
            except OSError:
                pass
        for proc in (self._verifier, self._writer):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    writer_main(sys.argv[1])
