"""The MQTT topic scheme (wire protocol v1): one subtree per terminal.

Per-terminal topics let the broker's ACL pin each terminal to its own subtree
(`%u` = username = terminal id), so one terminal cannot publish as another, and
keep everything plain MQTT 3.1.1 so the MicroPython terminal (umqtt) speaks it.
Request/response uses a correlation id in the payload, not MQTT 5 properties.
"""

from protocols.schema import is_id

ROOT = "agri/v1/t"

UP = "up"                 # terminal -> gateway: record batches, QoS 1
ACK = "ack"               # gateway -> terminal: cumulative end-to-end acks, QoS 1
STATUS = "status"         # terminal -> all: online/offline, retained, last will
CONFIG = "config"         # gateway -> terminal: configuration, retained
AUTH_REQ = "auth/req"     # terminal -> gateway: authorization request
AUTH_RESP = "auth/resp"   # gateway -> terminal: authorization response

TERMINAL_PUBLISHES = (UP, STATUS, AUTH_REQ)
TERMINAL_SUBSCRIBES = (ACK, CONFIG, AUTH_RESP)

# What the gateway subscribes to. With several gateway workers, prefix with
# "$share/<group>/" (MQTT 5 shared subscriptions) so each message goes to one.
GATEWAY_SUBSCRIBES = (ROOT + "/+/" + UP, ROOT + "/+/" + STATUS, ROOT + "/+/" + AUTH_REQ)


# What `is_terminal_id` accepts: stricter than the wire's `id` grammar (which
# also allows ":"), because a terminal id is also a broker username, a line
# of Mosquitto's password file ("user:hash"), a client id, an ACL topic level
# and a certificate's CN.
TERMINAL_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")
TERMINAL_ID_MAX = 64
TERMINAL_ID_RULE = "1-64 characters of A-Z a-z 0-9 _ - . starting with a letter or digit"


def is_terminal_id(name):
    """A terminal id as provisioning accepts it (TERMINAL_ID_RULE): the first
    character a letter or digit, so an id is never an option ("-x") or a
    hidden file name (".x") where it becomes a file name or an argument."""
    return (isinstance(name, str) and 0 < len(name) <= TERMINAL_ID_MAX and TERMINAL_ID_CHARS.issuperset(name)
            and name[0] not in "_-.")


def topic(terminal, leaf):
    if not is_id(terminal) or "/" in terminal:
        raise ValueError("bad terminal id %r" % (terminal,))
    return ROOT + "/" + terminal + "/" + leaf


def parse(name):
    """(terminal, leaf) of a topic in the scheme, or None for anything else."""
    prefix = ROOT + "/"
    if not name.startswith(prefix):
        return None
    rest = name[len(prefix):]
    slash = rest.find("/")
    if slash <= 0:
        return None
    terminal, leaf = rest[:slash], rest[slash + 1:]
    if not is_id(terminal):
        return None
    if leaf not in (UP, ACK, STATUS, CONFIG, AUTH_REQ, AUTH_RESP):
        return None
    return terminal, leaf


def broker_uses_tls(url):
    """True for `mqtts://` (MQTT over TLS), False for `mqtt://`."""
    return url.startswith("mqtts://")


def parse_broker_url(url):
    """`mqtt://host:port` or `mqtts://host:port` (TLS) -> (host, port). The
    port defaults to 1883, and to 8883 for mqtts."""
    tls = broker_uses_tls(url)
    prefix = "mqtts://" if tls else "mqtt://"
    if not url.startswith(prefix):
        raise ValueError("broker URL must look like mqtt://HOST:PORT or mqtts://HOST:PORT, got %r" % (url,))
    rest = url[len(prefix):].rstrip("/")
    if "@" in rest:
        raise ValueError("put broker credentials in the config, not in the URL")
    host, port = rest, 8883 if tls else 1883
    if rest.startswith("["):  # [IPv6]:port
        end = rest.find("]")
        host, tail = rest[1:end], rest[end + 1:]
        if tail.startswith(":"):
            port = int(tail[1:])
    elif ":" in rest:
        host, port_text = rest.rsplit(":", 1)
        port = int(port_text)
    if not host or not 0 < port < 65536:
        raise ValueError("bad broker URL %r" % (url,))
    return host, port
