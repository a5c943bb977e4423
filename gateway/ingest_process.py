"""Ingest in a process of its own, beside the MQTT network process.

paho spends tens of microseconds of interpreter time on every message, so in
one process the network thread and the database writer take turns on the GIL
and neither runs at full speed. Here the network process only frames each raw
message onto a pipe; a child process (`python -m gateway.ingest_process DB N`)
runs the whole `Ingest` (the transaction, the bookkeeping; verification in its
own N verifier processes) and writes back one small frame per
acknowledgement, which the network process publishes. Messages of all
terminals go through one child in arrival order. Measured side by side on two
cores (bench/bench_ingest.py), this beats both one process with verifier
processes and a child that verifies in-process, for single-record messages
and for batches alike.

If the child dies, whatever it had not committed was never acknowledged, so
terminals send it again; the parent starts a new child, which reloads its state
from the database.
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from gateway.verifier import _HEADER, _LEN, _STATUS, _UP, _Frames, _frame

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
_ACK = struct.Struct("!QQ")  # upto, seen + 1 (0: no seen)


def child_main(db_path: str, verifiers: int) -> None:
    from gateway.ingest import Ingest
    from gateway.store import Store

    out_fd = sys.stdout.fileno()
    lock = threading.Lock()

    def publish_ack(terminal: str, upto: int, seen: int | None) -> None:
        body = _ACK.pack(upto, 0 if seen is None else seen + 1) + terminal.encode()
        data = memoryview(_LEN.pack(len(body)) + body)
        with lock:
            while data:
                data = data[os.write(out_fd, data):]

    store = Store(db_path)
    ingest = Ingest(store, publish_ack, verifiers=verifiers)
    ingest.start()
    frames = _Frames(sys.stdin.fileno())
    while True:
        batch = frames.read()
        if batch is None:
            break
        for frame in batch:
            kind, n = _HEADER.unpack_from(frame)
            topic = frame[_HEADER.size:_HEADER.size + n].decode()
            terminal = topic.split("/")[3] if topic.count("/") >= 4 else ""
            payload = frame[_HEADER.size + n:]
            if kind == _STATUS:
                ingest.submit_status(terminal, payload)
            else:
                ingest.submit_batch(topic, terminal, payload)
    ingest.drain(30)
    ingest.stop()
    store.close()


class IngestProcess:
    """The parent's side: same calls as `Ingest` for the network thread."""

    def __init__(self, db_path: str | Path, publish_ack: Callable[[str, int, int | None], None],
                 key_for: Callable[[str], bytes | None], verifiers: int = 1):
        self.db_path = str(db_path)
        self.verifiers = verifiers
        self.publish_ack = publish_ack
        self.key_for = key_for  # the authorization service checks MACs in this process
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._started = 0.0
        self._stopping = False

    def start(self) -> None:
        self._spawn()

    def _spawn(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self._proc = subprocess.Popen([sys.executable, "-m", "gateway.ingest_process", self.db_path, str(self.verifiers)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0)
        self._started = time.monotonic()
        threading.Thread(target=self._acks, args=(self._proc,), name="ingest-acks", daemon=True).start()

    def _acks(self, proc: subprocess.Popen) -> None:
        frames = _Frames(proc.stdout.fileno())
        while True:
            batch = frames.read()
            if batch is None:
                if not self._stopping:
                    log.error("ingest process exited (%s); unacknowledged records will be re-sent", proc.poll())
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
                self._proc.stdin.write(data)
                return
            except (BrokenPipeError, OSError, ValueError):
                if self._stopping:
                    return
            if time.monotonic() - self._started < 1.0:
                time.sleep(1.0)  # don't spin if it dies at once
            log.error("restarting the ingest process")
            self._spawn()
            try:
                self._proc.stdin.write(data)
            except (BrokenPipeError, OSError, ValueError):
                log.error("ingest process unavailable; message dropped unacknowledged (the terminal re-sends)")

    def submit_batch(self, topic: str, terminal: str, payload: bytes) -> None:
        self._send(_UP, topic, bytes(payload))

    def submit_status(self, terminal: str, payload: bytes) -> None:
        self._send(_STATUS, f"agri/v1/t/{terminal}/status", bytes(payload))

    def stop(self) -> None:
        self._stopping = True
        with self._lock:
            if self._proc is None:
                return
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()


if __name__ == "__main__":
    child_main(sys.argv[1], int(sys.argv[2]))
