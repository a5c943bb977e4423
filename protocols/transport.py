"""How both sides hold their MQTT connection (CPython only, like `cli`).

TCP_NODELAY on the broker connection: paho leaves Nagle's algorithm on, and a
small publish (an authorization answer, an ack) sent right after another small
one then waits for the peer's delayed ACK, about 40 ms on Linux per hop.
Mosquitto needs the same (`set_tcp_nodelay true`, simulator/broker.py).

TLS (`prepare`): an `mqtts://` broker URL means MQTT over TLS, with the
broker's certificate checked against `ca` (our own CA, gateway/enforcement/pki.py; the
system's CAs when none is given) and its name against the URL's host, at
least TLS 1.2; `cert` and `key` add a client certificate, for the broker's
certificate listener, where the certificate's CN is the username.
"""

import socket
import ssl

from protocols import topics


def no_delay(client):
    """Call from paho's on_connect, when the client has its socket."""
    sock = client.socket()
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def tls_context(ca=None, cert=None, key=None):
    """The client side of TLS: verify the broker (CA file, hostname), at least
    TLS 1.2, optionally present a client certificate. Raises OSError or
    ssl.SSLError (a missing or unreadable file) at once, not at connect."""
    if bool(cert) != bool(key):
        raise ValueError("a client certificate needs both cert and key")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        context.load_cert_chain(cert, key)
    return context


def prepare(client, url, ca=None, cert=None, key=None):
    """Set `client` (paho) up for `url`: TLS for mqtts://. Returns (host, port)
    for connect. TLS files with a plain mqtt:// URL are refused: the operator
    meant TLS and would silently not get it."""
    host, port = topics.parse_broker_url(url)
    if topics.broker_uses_tls(url):
        client.tls_set_context(tls_context(ca, cert, key))
    elif ca or cert or key:
        raise ValueError("CA or client certificate given for %s: TLS needs an mqtts:// URL" % (url,))
    return host, port
