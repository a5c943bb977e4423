"""The broker session over micropython-lib's umqtt.simple: connect with the last
will, subscribe, publish, poll, and reconnect with back-off.

umqtt.simple is a blocking client, and a broker that vanishes mid-read would
block it for ever: its socket is wrapped so that "blocking" means "at most
IO_TIMEOUT_S" from the TCP connect on (`_Sockets`; over TLS see ussl.py),
and any socket error or timeout drops the session; `ensure`
connects again after a back-off that doubles from `min_backoff` to
`max_backoff`. Keepalive: a PINGREQ when nothing was sent for half the
keepalive; no packet at all from the broker for 1.5 keepalives drops the
session (a dead link that never reset).
"""

import gc
import socket
import time

import umqtt.simple
from umqtt.simple import MQTTClient, MQTTException

IO_TIMEOUT_S = 5


class _Sockets:
    """umqtt.simple's `socket` module, with sockets born with the timeout.
    umqtt.simple makes its socket inside `connect()` and connects, reads the
    CONNACK and (for mqtts://) runs the TLS handshake before it hands the
    socket back: a peer that accepts TCP and then never speaks would hang the
    terminal there, before any wrapper of ours could set a timeout."""

    getaddrinfo = socket.getaddrinfo

    @staticmethod
    def socket():
        sock = socket.socket()
        sock.settimeout(IO_TIMEOUT_S)
        return sock


umqtt.simple.socket = _Sockets


class _TimedSocket:
    """The socket umqtt.simple uses, with a timeout where it asks to block."""

    def __init__(self, sock, timeout):
        self._sock = sock
        self._timeout = timeout
        self.last_read = time.ticks_ms()
        sock.settimeout(timeout)
        try:
            # TCP_NODELAY (IPPROTO_TCP 6, option 1: the constants are not in every
            # port's socket module): a small publish right after another would
            # otherwise wait for the broker's delayed ACK, ~40 ms a hop on Linux.
            sock.setsockopt(6, 1, 1)
        except (OSError, AttributeError):
            pass

    def setblocking(self, flag):
        if flag:
            self._sock.settimeout(self._timeout)
        else:
            self._sock.setblocking(False)

    def read(self, n):
        data = self._sock.read(n)
        if data:
            self.last_read = time.ticks_ms()
        return data

    def write(self, data, length=None):
        if length is None:
            return self._sock.write(data)
        return self._sock.write(memoryview(data)[:length])

    def close(self):
        self._sock.close()


def _ms():
    return time.ticks_ms()


class Session:
    def __init__(self, client_id, host, port, username, password, will_topic, will_payload,
                 keepalive=30, min_backoff=0.5, max_backoff=30.0, log=None, tls=None):
        """`tls`: None for mqtt://; for mqtts:// the parameters of ssl.wrap_socket
        (`tls_params`): the broker checked against the CA, by name."""
        self.tls = tls
        self.client_id = client_id
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.will = (will_topic, will_payload)
        self.keepalive = keepalive
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self._backoff = min_backoff
        self._next_try = _ms()
        self.client = None
        self.handlers = {}           # topic -> handler(payload)
        self.on_connect = None       # called after the subscriptions, on every (re)connect
        self.connects = 0
        self._log = log or (lambda *a: None)
        self._last_out = self._last_in = _ms()

    @property
    def connected(self):
        return self.client is not None

    def subscribe(self, topic, handler):
        self.handlers[topic] = handler

    def ensure(self):
        """Connected now? Tries to connect when the back-off allows."""
        if self.client is not None:
            return True
        if time.ticks_diff(self._next_try, _ms()) > 0:
            return False
        # the client and its socket live as long as the session: made right
        # after a collection they sit low in the heap, not above the garbage
        # of start-up (or of the last session), which would leave the free
        # heap in pieces no config chunk fits (docs/mcu.md "Memory and size")
        gc.collect()
        client = MQTTClient(self.client_id, self.host, self.port, self.username, self.password,
                            keepalive=self.keepalive, ssl=self.tls is not None, ssl_params=self.tls or {})
        client.set_last_will(self.will[0], self.will[1], retain=True, qos=1)
        client.set_callback(self._dispatch)
        try:
            client.connect(clean_session=True)
            client.sock = _TimedSocket(client.sock, IO_TIMEOUT_S)
            self.client = client
            self._last_out = self._last_in = _ms()
            for topic in self.handlers:
                client.subscribe(topic, qos=1)
        except (OSError, MQTTException, AssertionError, IndexError, MemoryError) as err:
            self._log("broker connect failed: %r" % (err,))
            self._drop(client)
            self._next_try = time.ticks_add(_ms(), int(self._backoff * 1000))
            self._backoff = min(self._backoff * 2, self.max_backoff)
            return False
        self._backoff = self.min_backoff
        self.connects += 1
        self._log("broker connected %s:%d" % (self.host, self.port))
        if self.on_connect is not None:
            self.on_connect()
        return self.client is not None

    def _drop(self, client=None):
        client = client or self.client
        self.client = None
        if client is not None and client.sock is not None:
            try:
                client.sock.close()
            except OSError:
                pass

    def lost(self, err):
        """Drop the session (the broker re-sends nothing: clean session; what
        matters is on flash). A message too big for the heap (MemoryError) drops
        it too, rather than the terminal."""
        if self.client is not None:
            self._log("broker connection lost: %r" % (err,))
            import sys
            sys.print_exception(err, sys.stderr)
            self._drop()
            self._next_try = time.ticks_add(_ms(), int(self._backoff * 1000))

    _got = False

    _dispatching = False

    def _dispatch(self, topic, payload):
        self._got = True
        self._last_in = _ms()
        handler = self.handlers.get(topic.decode())
        if handler is not None:
            self._dispatching = True
            try:
                handler(payload)
            finally:
                self._dispatching = False

    def publish(self, topic, payload, retain=False):
        """QoS 1: returns once the broker's PUBACK came (True), or False when
        the session is gone. A PUBACK is not the gateway's ack."""
        if self.client is None:
            return False
        if self._dispatching:
            # umqtt.simple reads PUBACKs inside publish and runs handlers while
            # it waits: a publish from a handler would eat the outer PUBACK.
            raise RuntimeError("publish from a message handler: set a flag and publish from the main loop")
        try:
            self.client.publish(topic, payload, retain=retain, qos=1)
        except (OSError, MQTTException, AssertionError, IndexError, MemoryError) as err:
            self.lost(err)
            return False
        self._last_out = self._last_in = _ms()
        return True

    def poll(self):
        """Handle everything the broker has sent (handlers run here); keepalive."""
        if self.client is None:
            return
        try:
            for _ in range(50):   # bounded: a chatty broker must not starve the counter
                self._got = False
                op = self.client.check_msg()
                if op is None and not self._got:
                    break            # nothing waiting (or a PINGRESP)
                self._last_in = _ms()
            now = _ms()
            if self.keepalive:
                if time.ticks_diff(now, self._last_out) > self.keepalive * 500:
                    self.client.ping()
                    self._last_out = now
                if time.ticks_diff(now, self.client.sock.last_read) > self.keepalive * 1500:
                    raise OSError(110, "no packet from the broker for 1.5 keepalives")
        except (OSError, MQTTException, AssertionError, IndexError, MemoryError) as err:
            self.lost(err)

    def disconnect(self):
        if self.client is not None:
            try:
                self.client.disconnect()
            except OSError:
                pass
            self.client = None


def tls_params(host, ca, cert=None, key=None):
    """ssl.wrap_socket parameters for an mqtts:// broker: its certificate must
    chain to `ca` (the project's CA, gateway/enforcement/pki.py) and name `host`; `cert` and
    `key` add a client certificate (CN = terminal id) for the certificate
    listener. The files are read once, here."""
    import binascii
    import ssl

    def read(path):
        """DER bytes of the first PEM block in the file (MicroPython's mbedTLS
        binding refuses PEM text that is not NUL-terminated), or the file as is."""
        with open(path, "rb") as f:
            data = f.read()
        start = data.find(b"-----BEGIN")
        if start < 0:
            return data
        body = data[data.find(b"\n", start) + 1:data.find(b"-----END", start)]
        return binascii.a2b_base64(body.replace(b"\n", b"").replace(b"\r", b""))
    params = {"cert_reqs": ssl.CERT_REQUIRED, "cadata": read(ca), "server_hostname": host}
    if cert:
        params["cert"], params["key"] = read(cert), read(key)
    return params
