"""`ussl` for micropython-lib's umqtt.simple 1.3.4 (the version on PyPI), which
imports that name for mqtts:// (MicroPython 1.22 and later only have `ssl`).

It also keeps the TLS connection's timeout. A TLS socket has no `settimeout`
of its own: it reads through the TCP socket under it (born with the timeout,
mqtt._Sockets), and umqtt.simple's `setblocking(True)` after every poll, passed
down, would leave that socket blocking for ever (ESP32) or drop the deadline:
a broker that stops answering mid-stream would then hang the terminal in its
next read. `TlsSocket` sends `settimeout` and `setblocking` to the TCP socket,
so mqtt._TimedSocket can put the timeout back each time.
"""

import ssl


class TlsSocket:
    def __init__(self, tls, tcp):
        self._tls = tls
        self._tcp = tcp

    def read(self, n):
        return self._tls.read(n)

    def write(self, data, length=None):
        if length is None:
            return self._tls.write(data)
        return self._tls.write(data, length)

    def settimeout(self, timeout):
        self._tcp.settimeout(timeout)

    def setblocking(self, flag):
        self._tcp.setblocking(flag)

    def setsockopt(self, level, option, value):
        self._tcp.setsockopt(level, option, value)

    def close(self):
        self._tls.close()


def wrap_socket(sock, **params):
    return TlsSocket(ssl.wrap_socket(sock, **params), sock)
