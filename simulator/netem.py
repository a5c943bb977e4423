"""A TCP forwarder that can cut the network the way the field does.

`cut()` black-holes traffic: established connections stay open but nothing
passes in either direction, and new connections are accepted and then hang, as
when a shop's uplink dies without a TCP reset. Clients only notice through
their MQTT keepalive, which is exactly what needs testing. `restore()` drops
the dead connections (both ends would have timed out by then) and forwards
again.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading

log = logging.getLogger(__name__)


class Link:
    def __init__(self, target_host: str, target_port: int, listen_port: int = 0, scheme: str = "mqtt"):
        """`scheme`: of the URL clients use, "mqtts" in front of a TLS listener
        (the bytes pass through untouched; the broker's certificate names
        127.0.0.1, where the link listens)."""
        self.target = (target_host, target_port)
        self.scheme = scheme
        self._server = socket.create_server(("127.0.0.1", listen_port))
        self.port = self._server.getsockname()[1]
        self._cut = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket | None]] = []
        self._thread = threading.Thread(target=self._run, name=f"netem-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> "Link":
        self._thread.start()
        return self

    def cut(self) -> None:
        self._cut.set()

    def unplug(self) -> None:
        """The shop's router dies: established connections close at once (the
        client notices without waiting for its keepalive), new ones hang."""
        self._cut.set()
        self._close(self._take())

    def restore(self) -> None:
        pairs = self._take()
        self._cut.clear()
        self._close(pairs)

    def _take(self) -> list:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        return pairs

    @staticmethod
    def _close(pairs: list) -> None:
        for a, b in pairs:
            for s in (a, b):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass

    def close(self) -> None:
        self._stop.set()
        self.restore()
        self._server.close()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        self._server.setblocking(False)
        sel.register(self._server, selectors.EVENT_READ)
        peers: dict[socket.socket, socket.socket] = {}
        while not self._stop.is_set():
            for key, _ in sel.select(timeout=0.05):
                sock = key.fileobj
                if sock is self._server:
                    try:
                        client, _ = self._server.accept()
                    except OSError:
                        continue
                    if self._cut.is_set():
                        with self._lock:
                            self._pairs.append((client, None))  # hangs: never forwarded
                        continue
                    try:
                        upstream = socket.create_connection(self.target, timeout=2)
                    except OSError:
                        client.close()
                        continue
                    for s in (client, upstream):
                        s.setblocking(False)
                    peers[client], peers[upstream] = upstream, client
                    sel.register(client, selectors.EVENT_READ)
                    sel.register(upstream, selectors.EVENT_READ)
                    with self._lock:
                        self._pairs.append((client, upstream))
                    continue
                if self._cut.is_set():
                    continue  # leave bytes unread: black hole
                other = peers.get(sock)
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if data and other is not None:
                    try:
                        other.setblocking(True)
                        other.sendall(data)
                        other.setblocking(False)
                        continue
                    except OSError:
                        pass
                for s in (sock, other):
                    if s is not None and s in peers:
                        try:
                            sel.unregister(s)
                        except (KeyError, ValueError):
                            pass
                        peers.pop(s, None)
                        s.close()
            # forget sockets closed by restore()
            for s in [s for s in peers if s.fileno() == -1]:
                try:
                    sel.unregister(s)
                except (KeyError, ValueError):
                    pass
                peers.pop(s, None)
            if self._cut.is_set():
                # while cut, stop watching readable sockets so select doesn't spin
                for s in list(peers):
                    try:
                        sel.unregister(s)
                    except (KeyError, ValueError):
                        pass
                self._cut_wait(sel, peers)

    def _cut_wait(self, sel, peers) -> None:
        while self._cut.is_set() and not self._stop.is_set():
            for key, _ in sel.select(timeout=0.05):
                if key.fileobj is self._server:
                    try:
                        client, _ = self._server.accept()
                        with self._lock:
                            self._pairs.append((client, None))
                    except OSError:
                        pass
        for s in list(peers):
            if s.fileno() != -1:
                try:
                    sel.register(s, selectors.EVENT_READ)
                except (KeyError, ValueError):
                    pass
