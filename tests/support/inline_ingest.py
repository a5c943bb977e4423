"""The ingest writer driven directly, for tests of what it stores: each
message is verified on the calling thread and stored in its own transaction
before `submit_batch` returns, and followers run when the test drains.

The gateway itself always runs the process pipeline (gateway/ingest/pipeline.py);
this skips the processes, not the code: the same `verify_message` and the same
`Ingest.process` as the pipeline's verifier and writer."""

from __future__ import annotations

from gateway.ingest.follow import Follower
from gateway.ingest.verified import verify_message
from gateway.ingest.writer import Ingest
from gateway.store import KeyCache
from protocols import topics


class InlineIngest(Ingest):
    def __init__(self, store, publish_ack, **options):
        super().__init__(store, publish_ack, **options)
        self.key_for = KeyCache(store)
        self.followers: list[Follower] = []

    def follow(self, name: str, hook) -> Follower:
        """The supervision service attaches its rules here (gateway/supervision/service.py)."""
        follower = Follower(self.store.path, name, hook, self.wall_ms)
        self.followers.append(follower)
        return follower

    def submit_batch(self, topic: str, terminal: str, payload: bytes) -> None:
        self._submit(False, topic, payload)

    def submit_status(self, terminal: str, payload: bytes) -> None:
        self._submit(True, topics.topic(terminal, topics.STATUS), payload)

    def _submit(self, is_status: bool, topic: str, payload: bytes) -> None:
        self.process([verify_message(is_status, topic, bytes(payload), self.key_for)], idle=lambda: True)

    def start(self) -> None:
        pass

    def pids(self) -> dict:
        return {}

    def drain(self, timeout: float = 10.0) -> bool:
        """Every follower caught up with what is stored (the writer itself is
        synchronous: whatever was submitted is committed and acked)."""
        for follower in self.followers:
            while follower.step():
                pass
        return True

    def stop(self) -> None:
        for follower in self.followers:
            follower.conn.close()
        self.followers = []
