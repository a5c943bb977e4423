"""Ingest as a pipeline of processes: network → verifier → writer.

paho spends tens of microseconds of interpreter time on every message, so in
one process the network thread, verification and the database writer take
turns on the GIL and none runs at full speed. Here each stage is a process:

- the network process (the gateway's main process) only frames each raw
  message onto the verifier's stdin, and publishes the acks the writer
  sends back;
- the verifiers (`python -m gateway.ingest.verifier DB`, `--verifiers` of them)
  parse and check the messages (pure CPU) and write the verified items,
  as msgpack, straight into a pipe the writer reads;
- the writer (`python -m gateway.ingest.pipeline DB FDS`) is one thread: it
  reads whatever is waiting on its pipes, stores it in one transaction
  (`Ingest.process`), and writes one small frame per acknowledgement. If
  the database goes away (PostgreSQL restarted), the transaction fails, is
  not acknowledged, and the writer waits for a new connection before it
  reads on: the pipes fill, the network process stops taking messages, and
  the broker keeps them.

A terminal's messages always go through the same verifier, so the writer sees
them in arrival order. If a verifier dies, only that verifier is replaced: the
network process hands the writer the new one's pipe (over a Unix socket) and
sends the new one what the dead one had not answered, the message it died on
alone (gateway/ingest/verifier.py), so other terminals lose no more than a moment and
a message that kills verifiers ends in the quarantine. If the writer dies,
whatever was not committed was never acknowledged, so terminals send it again;
the network process starts a fresh pipeline, and the writer reloads its state
from the database.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Callable

from gateway.ingest.verifier import _LEN, _STATUS, _UP, MODULE, Verifier, _Frames, _frame, _unframe
from protocols import topics

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
_ACK = struct.Struct("!QQ")  # upto, seen + 1 (0: no seen)


def writer_main(db_path: str, control_fd: int, budget=None) -> None:
    """The writer stage: verified items in (one pipe per verifier, each
    handed over on the control socket), acks out (stdout). Ends when the
    control socket and every pipe it handed over are closed."""
    from gateway.ingest.verified import decode_verified
    from gateway.ingest.writer import Ingest, QuarantineBudget
    from gateway.store import Store

    out_fd = sys.stdout.fileno()

    def publish_ack(terminal: str, upto: int, seen: int | None) -> None:
        body = _ACK.pack(upto, 0 if seen is None else seen + 1) + terminal.encode()
        data = memoryview(_LEN.pack(len(body)) + body)
        while data:
            data = data[os.write(out_fd, data):]

    store = Store(db_path)
    ingest = Ingest(store, publish_ack, budget=budget or QuarantineBudget())
    readers: dict[int, _Frames] = {}
    control: socket.socket | None = socket.socket(fileno=control_fd)

    def poll(timeout: float | None) -> list[int]:
        """Pipes with something to read; takes in new pipes on the way."""
        nonlocal control
        watched = list(readers) + ([control.fileno()] if control is not None else [])
        buffered = [fd for fd, r in readers.items() if r.buf]
        ready = select.select(watched, [], [], 0 if buffered else timeout)[0]
        if control is not None and control.fileno() in ready:
            ready.remove(control.fileno())
            message, fds, _, _ = socket.recv_fds(control, 16, 16)
            if not message:  # the network process closed it: no more pipes will come
                control.close()
                control = None
            for fd in fds:
                readers[fd] = _Frames(fd)
        return list(set(buffered) | set(ready))

    def idle() -> bool:
        return not any(r.buf for r in readers.values()) and not select.select(list(readers), [], [], 0)[0]

    while readers or control is not None:
        ready = poll(0.02 if ingest.acks_pending() else None)
        if not ready:
            if ingest.acks_pending():
                ingest.send_due_acks(force=True)  # quiet now: nothing may wait for its ack
            continue
        group = []
        for fd in ready:
            batch = readers[fd].read()
            if batch is None:  # that verifier has finished (or died): take the others' last items
                del readers[fd]
                os.close(fd)
                continue
            for frame in batch:
                group.extend(decode_verified(frame))
        if group:
            ingest.process(group, idle)
    ingest.send_due_acks(force=True)
    stats = ingest.stats
    log.info("ingest writer stopped stored=%d duplicates=%d quarantined=%d commits=%d",
             stats.stored, stats.duplicates, stats.quarantined, stats.commits)
    store.close()


def _widen(fd: int) -> None:
    """Give a pipe room for a burst (Linux: up to fs.pipe-max-size, 1 MiB by
    default), so one stage's fsync does not stall the stage before it."""
    try:
        import fcntl

        fcntl.fcntl(fd, 1031, 1 << 20)  # F_SETPIPE_SZ
    except (ImportError, OSError):
        pass


class IngestProcess:
    """The network process's side: same calls as `Ingest` for the network thread."""

    def __init__(self, db_path: str | Path, publish_ack: Callable[[str, int, int | None], None],
                 key_for: Callable[[str], bytes | None], verifiers: int = 1, budget=None,
                 verifier_module: str = MODULE):
        self.db_path = str(db_path)
        self.publish_ack = publish_ack
        self.key_for = key_for  # the authorization service checks MACs in this process
        self.count = max(1, verifiers)
        self.budget = budget  # gateway.ingest.writer.QuarantineBudget, None for its defaults
        self.verifier_module = verifier_module  # tests run the verifiers with a failpoint
        self._lock = threading.Lock()
        self._verifiers: list[Verifier] = []
        self._writer: subprocess.Popen | None = None
        self._control: socket.socket | None = None
        self._started = 0.0
        self._stopping = False

    def start(self) -> None:
        with self._lock:
            self._spawn([])

    def _spawn(self, pending: list[tuple[bytes, bool]]) -> None:
        """A new writer and verifiers; `pending` (frame, suspect) go to the
        verifiers first. Called with the lock held."""
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        args = [sys.executable, "-m", "gateway.ingest.pipeline", self.db_path, "--control", str(theirs.fileno())]
        if self.budget is not None:
            args += ["--quarantine-bytes", str(self.budget.bytes), "--quarantine-rows", str(self.budget.rows)]
        self._writer = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env, bufsize=0,
                                        pass_fds=[theirs.fileno()])
        theirs.close()
        self._control = ours
        _widen(self._writer.stdout.fileno())
        self._verifiers = [self._new_verifier() for _ in range(self.count)]
        self._started = time.monotonic()
        threading.Thread(target=self._acks, args=(self._writer,), name="ingest-acks", daemon=True).start()
        for data, suspect in pending:
            self._route(data).send(data, suspect)

    def _new_verifier(self) -> Verifier:
        """A verifier whose answers go straight to the writer: the read end
        of its pipe is handed to the writer on the control socket."""
        read_end, write_end = os.pipe()
        _widen(read_end)
        try:
            verifier = Verifier(self.db_path, write_end, self._verifier_exited, self.verifier_module)
            try:
                socket.send_fds(self._control, [b"p"], [read_end])
            except OSError:
                verifier.kill()
                verifier.close()
                raise
        finally:
            os.close(read_end)
            os.close(write_end)
        _widen(verifier.proc.stdin.fileno())
        return verifier

    def _route(self, data: bytes) -> Verifier:
        """One terminal's messages always take the same path, so the writer
        sees them in arrival order; the terminal is the topic's third level."""
        parsed = topics.parse(_unframe(data)[1])
        return self._verifiers[zlib.crc32((parsed[0] if parsed else "").encode()) % len(self._verifiers)]

    def _acks(self, writer: subprocess.Popen) -> None:
        frames = _Frames(writer.stdout.fileno())
        while True:
            batch = frames.read()
            if batch is None:
                if not self._stopping and writer is self._writer:
                    log.error("ingest writer exited (%s); unacknowledged records will be re-sent", writer.wait())
                    self._restart(writer)
                return
            for frame in batch:
                upto, seen = _ACK.unpack_from(frame)
                try:
                    self.publish_ack(frame[_ACK.size:].decode(), upto, seen - 1 if seen else None)
                except Exception:
                    log.exception("ack publish failed")

    def _restart(self, writer: subprocess.Popen) -> None:
        """The writer died: a fresh pipeline. What it had not committed was
        never acknowledged (terminals send it again); what the verifiers had
        not answered yet goes to the new ones."""
        if time.monotonic() - self._started < 1.0:
            time.sleep(1.0)  # don't spin if the pipeline dies at once
        with self._lock:
            if self._stopping or writer is not self._writer:
                return
            pending = []
            for verifier in self._verifiers:
                verifier.kill()
                pending += verifier.unanswered(crashed=False)
                verifier.close()
            self._control.close()
            self._spawn(pending)

    def _verifier_exited(self, dead: Verifier) -> None:
        """A verifier died on its own (watcher thread): replace it alone and
        give the new one what the dead one had not answered."""
        if dead.began_nothing() and time.monotonic() - dead.started < 1.0:
            time.sleep(1.0)  # don't spin if verifiers cannot start
        with self._lock:
            if self._stopping or dead not in self._verifiers:
                return
            index = self._verifiers.index(dead)
            log.error("verifier %d exited (%s); starting a new one", index, dead.proc.returncode)
            try:
                replacement = self._new_verifier()
            except OSError:  # the writer is gone too: its own restart takes everything over
                log.exception("could not start a verifier")
                return
            self._verifiers[index] = replacement
            for data, suspect in dead.unanswered(crashed=True):
                replacement.send(data, suspect)
            dead.close()

    def _send(self, kind: bytes, terminal: str, topic: str, payload: bytes) -> None:
        """To the verifier for this terminal. If it died, it keeps the
        message for its replacement (`_verifier_exited`)."""
        data = _frame(kind, topic, payload)
        with self._lock:
            if not self._stopping:
                self._verifiers[zlib.crc32(terminal.encode()) % len(self._verifiers)].send(data)

    def submit_batch(self, topic: str, terminal: str, payload: bytes) -> None:
        self._send(_UP, terminal, topic, bytes(payload))

    def submit_status(self, terminal: str, payload: bytes) -> None:
        self._send(_STATUS, terminal, topics.topic(terminal, topics.STATUS), bytes(payload))

    def pids(self) -> dict:
        """The pipeline's processes (tests: none of them may die of a message)."""
        with self._lock:
            return {"writer": self._writer.pid, "verifiers": [v.proc.pid for v in self._verifiers]}

    def stop(self) -> None:
        """Close the pipeline's input; the verifiers finish, then the writer
        commits what it has and exits."""
        with self._lock:
            self._stopping = True
            verifiers, writer = list(self._verifiers), self._writer
            for v in verifiers:
                v.retire()
            if self._control is not None:
                self._control.close()
        for v in verifiers:
            v.close(timeout=30)
        if writer is not None:
            try:
                writer.wait(timeout=30)
            except subprocess.TimeoutExpired:
                writer.kill()


def main(argv: list[str]) -> None:
    from gateway.ingest.writer import QUARANTINE_BYTES_PER_HOUR, QUARANTINE_ROWS_PER_HOUR, QuarantineBudget

    parser = argparse.ArgumentParser(prog="python -m gateway.ingest.pipeline")
    parser.add_argument("db")
    parser.add_argument("--control", type=int, required=True, help="Unix socket the verifiers' pipes come on")
    parser.add_argument("--quarantine-bytes", type=int, default=QUARANTINE_BYTES_PER_HOUR)
    parser.add_argument("--quarantine-rows", type=int, default=QUARANTINE_ROWS_PER_HOUR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    writer_main(args.db, args.control, QuarantineBudget(args.quarantine_bytes, args.quarantine_rows))


if __name__ == "__main__":
    main(sys.argv[1:])
