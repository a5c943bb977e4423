"""The network side of many paho clients on a few threads, for the fleet.

A Pi runs one agent, and `loop_start()` (a thread per client, waiting in
select) is right there. A simulator process holding a thousand agents had a
thousand such threads, each waking at least every second to call select on
its one socket: about half of the fleet's CPU went to that, and select
refuses descriptors above 1,024. Here a few threads wait in epoll on all the
sockets at once, through paho's external-loop callbacks:

- a socket paho opens is registered for reading, and for writing while paho
  has bytes to send (`on_socket_register_write`, called from whichever
  thread published; the change is handed to the loop thread, which alone
  touches the selector);
- once a second every client gets `loop_misc()` (keepalive pings, and a lost
  broker noticed);
- a connection that fails or drops is retried after the client's own
  back-off (`reconnect_delay_set`), doubling up to its maximum, as
  `loop_forever` would, on a small pool of threads so that a connect that
  hangs (a cut network) holds no other client up;
- `remove` ends all that for a client (stop, power cut) without a reconnect;
- over TLS, what the SSL object has already decrypted is read at once
  (`_read_buffered`): epoll only sees the kernel's buffer.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)

MISC_EVERY_S = 1.0


class NetLoop:
    def __init__(self, name: str = "netloop", connectors: int = 4):
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._ops: list[tuple] = []
        self._clients: dict[mqtt.Client, dict] = {}     # loop thread only
        self._timers: list[tuple[float, int, mqtt.Client]] = []
        self._order = itertools.count()
        self._stopping = False
        self._connect_pool = ThreadPoolExecutor(connectors, thread_name_prefix=f"{name}-connect")
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- any thread

    def add(self, client: mqtt.Client) -> None:
        """Run `client` here; `connect_async` must have been called on it."""
        client.on_socket_open = lambda c, u, sock: self._post("open", c, sock)
        client.on_socket_close = lambda c, u, sock: self._post("close", c, sock)
        client.on_socket_register_write = lambda c, u, sock: self._post("write", c, sock, True)
        client.on_socket_unregister_write = lambda c, u, sock: self._post("write", c, sock, False)
        self._post("add", client)

    def remove(self, client: mqtt.Client, timeout: float = 5.0) -> None:
        """Stop serving `client`: no more reads, writes or reconnects; returns
        once the loop has let go of it (its socket may be closed then)."""
        done = threading.Event()
        self._post("remove", client, done)
        if threading.current_thread() is not self._thread:
            done.wait(timeout)

    def close(self) -> None:
        self._post("stop", None)
        self._thread.join(timeout=10)
        self._connect_pool.shutdown(wait=False, cancel_futures=True)
        self._wake_w.close()

    def _post(self, *op) -> None:
        with self._lock:
            self._ops.append(op)
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass   # a wake-up is already pending (or we are closing)

    # -- the loop thread

    def _run(self) -> None:
        next_misc = time.monotonic() + MISC_EVERY_S
        while not self._stopping:
            try:
                next_misc = self._turn(next_misc)
            except Exception:   # the loop serves every client: it must not die of one surprise
                log.exception("network loop turn failed")
                time.sleep(0.1)
        for state in self._clients.values():
            self._unregister(state)
        self._selector.close()
        self._wake_r.close()

    def _turn(self, next_misc: float) -> float:
        """Wait for sockets, timers or the next second; serve what is due."""
        now = time.monotonic()
        timeout = max(0.0, min(next_misc, self._timers[0][0] if self._timers else next_misc) - now)
        for key, events in self._selector.select(timeout):
            client = key.data
            if client is None:
                self._drain_wake()
                continue
            if client not in self._clients:
                continue
            try:
                if events & selectors.EVENT_READ:
                    client.loop_read()
                    _read_buffered(client)
                if events & selectors.EVENT_WRITE and client in self._clients:
                    client.loop_write()
            except Exception:   # one client's failure must not stop the others
                log.exception("network loop: client %s failed", client._client_id)
        self._apply_ops()
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, client = heapq.heappop(self._timers)
            state = self._clients.get(client)
            if state is not None and state["sock"] is None and not state["connecting"]:
                state["connecting"] = True
                self._connect_pool.submit(self._connect, client)
        if now >= next_misc:
            next_misc = now + MISC_EVERY_S
            for client, state in list(self._clients.items()):
                if state["sock"] is not None:
                    if client.is_connected():
                        state["delay"] = None    # the next loss starts the back-off afresh
                    try:
                        client.loop_misc()
                    except Exception:
                        log.exception("network loop: loop_misc failed")
        return next_misc

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _apply_ops(self) -> None:
        with self._lock:
            ops, self._ops = self._ops, []
        for op in ops:
            try:
                self._apply(op)
            except (OSError, ValueError, KeyError) as err:
                # a socket closed under us (its "close" follows); never let the loop die
                log.debug("network loop: %s for %s: %s", op[0], getattr(op[1], "_client_id", None), err)

    def _apply(self, op: tuple) -> None:
        kind, client = op[0], op[1]
        if kind == "stop":
            self._stopping = True
            return
        if kind == "add":
            self._clients[client] = {"sock": None, "connecting": False, "delay": None, "write": False}
            self._schedule(client, 0.0)
            return
        state = self._clients.get(client)
        if kind == "remove":
            if state is not None:
                del self._clients[client]
                self._unregister(state)
            op[2].set()
        elif state is None:
            return
        elif kind in ("connected", "failed"):
            state["connecting"] = False
            if kind == "failed":
                self._retry(client, state)
        elif kind == "open":
            self._unregister(state)
            state["sock"] = op[2]
            self._selector.register(op[2], self._events(state), client)
        elif kind == "write":
            state["write"] = op[3]
            if state["sock"] is op[2]:
                self._selector.modify(op[2], self._events(state), client)
        elif kind == "close" and state["sock"] is op[2]:   # not the old socket reconnect() closes
            self._unregister(state)
            if not _disconnected_on_purpose(client):
                self._retry(client, state)

    @staticmethod
    def _events(state: dict) -> int:
        return selectors.EVENT_READ | (selectors.EVENT_WRITE if state["write"] else 0)

    def _unregister(self, state: dict) -> None:
        if state["sock"] is not None:
            try:   # a socket closed before we got to it is found by identity
                self._selector.unregister(state["sock"])
            except (KeyError, ValueError):
                pass
        state["sock"] = None
        state["write"] = False

    def _retry(self, client: mqtt.Client, state: dict) -> None:
        """Reconnect after the client's back-off, doubling from its minimum."""
        low, high = client._reconnect_min_delay, client._reconnect_max_delay
        state["delay"] = low if state["delay"] is None else min(state["delay"] * 2, high)
        self._schedule(client, state["delay"])

    def _schedule(self, client: mqtt.Client, delay: float) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._order), client))

    # -- connector threads

    def _connect(self, client: mqtt.Client) -> None:
        """paho's reconnect(): TCP connect and CONNECT sent; the socket arrives
        through on_socket_open, a failure through the back-off."""
        try:
            rc = client.reconnect()
            ok = rc == mqtt.MQTT_ERR_SUCCESS
        except (OSError, ValueError) as err:
            log.debug("connect failed %s: %s", client._client_id, err)
            ok = False
        self._post("connected" if ok else "failed", client)


def _read_buffered(client: mqtt.Client, most: int = 10_000) -> None:
    """Over TLS, bytes already decrypted wait in the SSL object, not in the
    kernel, so epoll will not report them again: read until none is left (as
    paho's own loop does by checking `pending()` before it selects)."""
    for _ in range(most):
        sock = client.socket()
        pending = getattr(sock, "pending", None)
        if pending is None or pending() <= 0:
            return
        if client.loop_read() != mqtt.MQTT_ERR_SUCCESS:
            return


def _disconnected_on_purpose(client: mqtt.Client) -> bool:
    """After `disconnect()`: no reconnect, as loop_forever decides (paho keeps
    that state privately)."""
    state = getattr(client, "_state", None)
    return getattr(state, "name", "") in ("MQTT_CS_DISCONNECTING", "MQTT_CS_DISCONNECTED")
