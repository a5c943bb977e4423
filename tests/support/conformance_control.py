"""The restart commands the conformance kit runs (`--restart-broker CMD`,
`--restart-terminal CMD`), for tests: the test process owns the broker and
the terminal under test, so the command asks it over a Unix socket.

    python -m tests.support.conformance_control SOCKET restart-broker

`Control(socket_path, {"restart-broker": fn, ...})` serves those requests in
a thread of the test process; the command exits 0 once `fn` returned.
"""

from __future__ import annotations

import shlex
import socket
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Control:
    def __init__(self, path: Path, actions: dict):
        self.path, self.actions = Path(path), actions
        self.done: list[str] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(self.path))
        self.sock.listen(2)
        threading.Thread(target=self._serve, daemon=True).start()

    def command(self, action: str) -> str:
        return " ".join(shlex.quote(x) for x in (sys.executable, "-m", "tests.support.conformance_control",
                                                 str(self.path), action))

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                action = conn.makefile("r").readline().strip()
                try:
                    self.actions[action]()
                    self.done.append(action)
                    conn.sendall(b"ok\n")
                except Exception as err:  # the kit shows the command's failure
                    conn.sendall(f"error {err!r}\n".encode())

    def close(self) -> None:
        self.sock.close()


def main(argv=None) -> int:
    path, action = (argv or sys.argv[1:])[:2]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(120)
        sock.connect(path)
        sock.sendall(action.encode() + b"\n")
        answer = sock.makefile("r").readline().strip()
    if answer != "ok":
        print(answer, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
