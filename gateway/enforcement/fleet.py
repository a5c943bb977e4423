"""Terminal provisioning: each terminal gets its own record key and its own
broker password, and the broker gets a password file and an ACL that pin each
terminal to its own topic subtree (the whole broker configuration around them:
gateway/enforcement/brokerconf.py). Terminal ids keep to one strict syntax and never take a
gateway user's name (`check_terminal_id`).

Two independent secrets per terminal, because they guard different things: the
broker password stops a device from publishing on another terminal's topics,
the record key stops anyone without it (a broker operator included) from
forging or altering records the gateway will accept. The gateway keeps the
record key sealed under its master key (gateway/store/keys.py, `KeyVault`) and
only a hash of the password; `provision` returns both in the clear once, for
the terminal's config, and logs neither.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from gateway.store import Store
from protocols import topics

log = logging.getLogger(__name__)

# The gateway's broker users, one a connecting process: the generated broker
# configuration binds every client id to its username (Mosquitto's
# use_username_as_clientid), so two processes of one user would take each
# other's connection, and a terminal could take none of theirs.
GATEWAY_USER = "gateway"                  # `gateway run`: ingest, authorization, config push
SUPERVISE_SUFFIX = "-supervise"
SUPERVISE_USER = GATEWAY_USER + SUPERVISE_SUFFIX   # `gateway supervise`: the fleet status watcher
GATEWAY_USERS = (GATEWAY_USER, SUPERVISE_USER)
# Several `gateway run --share-group` workers: worker 1 is `gateway` (a single
# gateway grown to several keeps its user, and with it its broker session),
# worker n > 1 is `gateway-wN`, each with its supervise user beside it.
MAX_WORKERS = 64
# No terminal id may start with this (in any case): every gateway user does,
# and so may any the gateway adds later (an extra ingest worker's).
RESERVED_PREFIX = "gateway"


def supervise_user(user: str) -> str:
    """The broker user of the `gateway supervise` started by `gateway run --username USER`."""
    return user + SUPERVISE_SUFFIX


def worker_user(n: int) -> str:
    """The broker user of ingest worker `n` (1-based)."""
    return GATEWAY_USER if n == 1 else f"{GATEWAY_USER}-w{n}"


def check_workers(workers: int) -> int:
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"--workers must be 1..{MAX_WORKERS}, not {workers}")
    return workers


def gateway_users(workers: int = 1) -> list[str]:
    """Every broker user of a gateway of `workers` workers: each worker's and
    its supervise child's (`gateway run` starts one unless --no-supervision)."""
    users = []
    for n in range(1, check_workers(workers) + 1):
        users += [worker_user(n), supervise_user(worker_user(n))]
    return users


def check_terminal_id(terminal: str) -> str:
    """`terminal` if it may be provisioned, else ValueError saying why: the id
    becomes a broker username, a password-file line, a client id, a topic level
    and a certificate CN, so it keeps to one strict syntax, and it must never be
    (or later become) one of the gateway's own broker users."""
    if not topics.is_terminal_id(terminal):
        raise ValueError(f"terminal id {terminal!r} is malformed: it must be {topics.TERMINAL_ID_RULE} "
                         "(no ':', '/', '+', '#' or spaces)")
    if terminal.lower().startswith(RESERVED_PREFIX):
        raise ValueError(f"terminal id {terminal!r} is reserved: ids starting with {RESERVED_PREFIX!r} "
                         f"are the gateway's broker users ({', '.join(GATEWAY_USERS)})")
    return terminal


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
    check_terminal_id(terminal)
    key_hex = key_hex or secrets.token_hex(32)
    if len(bytes.fromhex(key_hex)) < 16:
        raise ValueError("a terminal key must be at least 16 bytes")
    mqtt_password = mqtt_password or secrets.token_urlsafe(18)
    store.add_terminal(terminal, key_hex, shop, mosquitto_hash(mqtt_password), now_ms)
    return Credentials(terminal, key_hex, mqtt_password)


def acl_text(workers: int = 1) -> str:
    """Mosquitto's ACL: each gateway user exactly what its process needs, each
    terminal its own subtree (%u: the username, which is also the client id and,
    on the certificate listener, the certificate's CN). A worker's shared
    subscription ($share/GROUP/agri/v1/t/+/up) is checked against the topic
    filter without its $share/GROUP/ prefix, so the same lines serve it."""
    root = topics.ROOT
    lines = []
    for n in range(1, check_workers(workers) + 1):
        user = worker_user(n)
        lines += [f"# {user}: gateway run (ingest, authorization, config push)", f"user {user}"]
        lines += [f"topic read {root}/+/{leaf}" for leaf in topics.TERMINAL_PUBLISHES]
        lines += [f"topic write {root}/+/{leaf}" for leaf in topics.TERMINAL_SUBSCRIBES]
        lines += ["", f"# {supervise_user(user)}: gateway supervise (fleet status)", f"user {supervise_user(user)}",
                  f"topic read {root}/+/{topics.STATUS}", ""]
    lines += ["# every terminal: its own subtree only"]
    lines += [f"pattern write {root}/%u/{leaf}" for leaf in topics.TERMINAL_PUBLISHES]
    lines += [f"pattern read {root}/%u/{leaf}" for leaf in topics.TERMINAL_SUBSCRIBES]
    return "\n".join(lines) + "\n"


def passwd_text(store: Store, gateway_password: str, workers: int = 1) -> str:
    """Mosquitto's password file: the gateway users (one password: they are the
    processes of one service on one host, started from one environment; the
    users keep their connections and permissions apart), then every terminal
    with a broker password. A stored id that provisioning would refuse today
    (from before the check: `gateway`, `a:b`) is left out and logged, so it can
    never shadow a gateway user or break the file."""
    lines = [f"{user}:{mosquitto_hash(gateway_password)}" for user in gateway_users(workers)]
    for t in store.terminals():
        if not t["mqtt_hash"]:
            continue
        try:
            check_terminal_id(t["id"])
        except ValueError as err:
            log.warning("terminal left out of the broker's password file: %s", err)
            continue
        lines.append(f"{t['id']}:{t['mqtt_hash']}")
    return "\n".join(lines) + "\n"


def write_private_text(path: Path, text: str) -> Path:
    """`text` to `path`, 0600 from the first byte, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    tmp.replace(path)
    return path


def write_broker_auth(store: Store, directory: str | Path, gateway_password: str,
                      workers: int = 1) -> tuple[Path, Path]:
    """Write `passwd` and `acl` for Mosquitto (password_file / acl_file), 0600
    in a 0700 directory. `gateway.enforcement.brokerconf.write` adds the mosquitto.conf
    that uses them."""
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    check_workers(workers)
    passwd = write_private_text(directory / "passwd", passwd_text(store, gateway_password, workers))
    acl = write_private_text(directory / "acl", acl_text(workers))
    return passwd, acl
