"""How both sides hold their MQTT connection (CPython only, like `cli`).

TCP_NODELAY on the broker connection: paho leaves Nagle's algorithm on, and a
small publish (an authorization answer, an ack) sent right after another small
one then waits for the peer's delayed ACK, about 40 ms on Linux per hop.
Mosquitto needs the same (`set_tcp_nodelay true`, simulator/broker.py).
"""

import socket


def no_delay(client):
    """Call from paho's on_connect, when the client has its socket."""
    sock = client.socket()
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
