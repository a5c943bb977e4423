"""Terminal provisioning: each terminal gets its own record key and its own
broker password, and the broker gets a password file and an ACL that pin each
terminal to its own topic subtree.

Two independent secrets per terminal, because they guard different things: the
broker password stops a device from publishing on another terminal's topics,
the record key stops anyone without it (a broker operator included) from
forging or altering records the gateway will accept.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from gateway.store import Store
from protocols import topics

GATEWAY_USER = "gateway"


@dataclass(frozen=True)
class Credentials:
    terminal: str
    key_hex: str
    mqtt_password: str


def mosquitto_hash(password: str, salt: bytes | None = None, iterations: int = 101) -> str:
    """A Mosquitto 2.x password-file hash ($7$: PBKDF2-SHA512), as mosquitto_passwd writes."""
    salt = salt or os.urandom(12)
    derived = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(derived).decode()}"


def provision(store: Store, terminal: str, shop: str | None, now_ms: int,
              key_hex: str | None = None, mqtt_password: str | None = None) -> Credentials:
    topics.topic(terminal, topics.UP)  # validates the id
    key_hex = key_hex or secrets.token_hex(32)
    if len(bytes.fromhex(key_hex)) < 16:
        raise ValueError("a terminal key must be at least 16 bytes")
    mqtt_password = mqtt_password or secrets.token_urlsafe(18)
    store.add_terminal(terminal, key_hex, shop, mosquitto_hash(mqtt_password), now_ms)
    return Credentials(terminal, key_hex, mqtt_password)


def acl_text() -> str:
    root = topics.ROOT
    lines = [f"user {GATEWAY_USER}"]
    lines += [f"topic read {root}/+/{leaf}" for leaf in topics.TERMINAL_PUBLISHES]
    lines += [f"topic write {root}/+/{leaf}" for leaf in topics.TERMINAL_SUBSCRIBES]
    lines.append("")
    lines += [f"pattern write {root}/%u/{leaf}" for leaf in topics.TERMINAL_PUBLISHES]
    lines += [f"pattern read {root}/%u/{leaf}" for leaf in topics.TERMINAL_SUBSCRIBES]
    return "\n".join(lines) + "\n"


def write_broker_auth(store: Store, directory: str | Path, gateway_password: str) -> tuple[Path, Path]:
    """Write `passwd` and `acl` for Mosquitto (password_file / acl_file)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"{GATEWAY_USER}:{mosquitto_hash(gateway_password)}"]
    lines += [f"{t['id']}:{t['mqtt_hash']}" for t in store.terminals() if t["mqtt_hash"]]
    passwd, acl = directory / "passwd", directory / "acl"
    tmp = passwd.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(passwd)
    acl.write_text(acl_text())
    return passwd, acl
