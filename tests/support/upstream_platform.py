"""A stand-in for the provincial supervision platform: a real HTTP server on a
free local port that keeps the delivery contract of docs/supervision.md from
the receiving side, so the upstream tests check what a real platform would.

It answers 503 to the first `fail` requests and to every request while
`failing` is set (an outage the test switches off), refuses a bad signature
with 401, stores items by id dropping ids it already has (a lost 2xx makes the
gateway send the same ids again), and keeps every accepted id as sent
(`raw_ids`) so a test can tell "stored once" from "sent once".
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self, key: bytes, fail: int = 0, failing: bool = False):
        self.key = key
        self.fail = fail
        self.failing = failing
        self.requests = 0
        self.rejected = 0          # answered 503
        self.items: list[dict] = []
        self.raw_ids: list[int] = []
        self.bad_signatures = 0
        self.bad_batches = 0       # X-Agri-Batch not matching the body's first-last
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(outer.receive(body, self.headers))
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/feed"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def receive(self, body: bytes, headers) -> int:
        with self.lock:
            self.requests += 1
            want = "sha256=" + hmac.new(self.key, body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(want, headers.get("X-Agri-Signature", "")):
                self.bad_signatures += 1
                return 401
            if self.failing or self.requests <= self.fail:
                self.rejected += 1
                return 503
            batch = json.loads(body)
            if headers.get("X-Agri-Batch") != f"{batch['first']}-{batch['last']}":
                self.bad_batches += 1
            last = self.items[-1]["id"] if self.items else 0
            for item in batch["items"]:
                self.raw_ids.append(item["id"])
                if item["id"] > last:
                    self.items.append(item)
                    last = item["id"]
            return 200

    def records(self) -> list[dict]:
        """Stored record items' payloads, in arrival order."""
        with self.lock:
            return [i["payload"] for i in self.items if i["kind"] == "record"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
