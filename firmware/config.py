"""The agent's TOML configuration, validated at load: a bad value names its key
and the file, so a technician in a shop can fix it from the message alone.

    [terminal]
    id = "T0001"                 # also the broker username
    key = "<64 hex>"             # record MAC key from `gateway terminal add`
    shop = "S0001"

    [ledger]
    path = "ledger.db"           # relative to the config file
    reserve_mb = 8               # refuse new sales below this much free space

    [broker]
    url = "mqtts://broker.example:8883"   # mqtt://HOST:1883 without TLS (a test bench only)
    username = "T0001"
    password = "..."
    ca = "ca.crt"                # the CA that signed the broker's certificate (mqtts only;
                                 # default: the system's CAs); the broker's name is checked too
    cert = "T0001.crt"           # optional: a client certificate with CN = terminal id, and
    key = "T0001.key"            # its key (0600), for the broker's certificate listener
                                 # (`gateway pki issue T0001`; username and password unused there)
                                 # paths relative to this file

    [uplink]
    batch = 100
    window = 2000                # at most 2000 (protocols.envelope.SEQ_WINDOW)
    ack_timeout_s = 5.0
    heartbeat_s = 60.0           # re-announce "online" this often (the gateway's silence rule)

    [counter]                    # optional: the sales counter (firmware/counter.py)
    deadline_ms = 1500           # wait this long for online authorization, then decide offline
    config_path = "T0001.config.db"   # last synced config (default: next to the ledger)
    registry_keys = ["<64 hex>"] # Ed25519 public keys that sign subject cards
    clerk = "clerk1"             # default clerk id on records

    [face]                       # optional: the face check against the synced gallery
    gallery = "T0001.gallery.aqf"     # sealed gallery file (default: next to the ledger)
    key_file = "/etc/agri-quota/face-gallery.key"   # device key (default: $AGRI_QUOTA_FACE_KEY_FILE,
                                 # else "<ledger stem>.face.key" next to the ledger, created on first use)
    max_distance = 0.45          # docs/face.md "Matching"
    min_margin = 0.1

Any other table is refused by name: a misspelt table would otherwise be
silently ignored and its settings left at their defaults.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from firmware.uplink import UplinkSettings
from protocols import envelope, schema, topics


class ConfigError(ValueError):
    pass


@dataclass
class CounterSettings:
    deadline_ms: int = 1500
    config_path: Path | None = None   # None: "<ledger stem>.config.db" next to the ledger
    registry_keys: tuple[bytes, ...] = ()
    clerk: str = "clerk"


@dataclass
class FaceSettings:
    gallery: Path | None = None       # None: "<ledger stem>.gallery.aqf" next to the ledger
    key_file: Path | None = None      # None: $AGRI_QUOTA_FACE_KEY_FILE, else "<ledger stem>.face.key"
    max_distance: float = 0.45
    min_margin: float = 0.1


@dataclass
class AgentConfig:
    terminal: str
    key: bytes
    shop: str
    ledger_path: Path
    reserve_bytes: int
    uplink: UplinkSettings
    source: Path | None = None
    counter: CounterSettings = field(default_factory=CounterSettings)
    face: FaceSettings = field(default_factory=FaceSettings)


def _get(table: dict, key: str, kind, where: str, default=None, required=False):
    if key not in table:
        if required:
            raise ConfigError(f"{where}.{key} is required")
        return default
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{where}.{key} must be {kind.__name__}, got {value!r}")
    return value


TABLES = ("terminal", "ledger", "broker", "uplink", "counter", "face", "kiosk")


def parse(data: dict, base: Path, source: Path | None = None) -> AgentConfig:
    unknown = sorted(set(data) - set(TABLES))
    if unknown:
        raise ConfigError(f"unknown table [{unknown[0]}]; the agent reads only " +
                          ", ".join(f"[{t}]" for t in TABLES))
    terminal_t = data.get("terminal") or {}
    terminal = _get(terminal_t, "id", str, "terminal", required=True)
    if not topics.is_terminal_id(terminal):
        raise ConfigError(f"terminal.id {terminal!r} must be {topics.TERMINAL_ID_RULE}")
    key_hex = _get(terminal_t, "key", str, "terminal", required=True)
    try:
        key = bytes.fromhex(key_hex)
    except ValueError:
        raise ConfigError("terminal.key must be hex") from None
    if len(key) < 16:
        raise ConfigError("terminal.key must be at least 16 bytes (32 hex digits)")
    shop = _get(terminal_t, "shop", str, "terminal", default=terminal)

    ledger_t = data.get("ledger") or {}
    ledger_path = Path(_get(ledger_t, "path", str, "ledger", default=f"{terminal}.ledger.db"))
    if not ledger_path.is_absolute():
        ledger_path = base / ledger_path
    reserve_mb = _get(ledger_t, "reserve_mb", float, "ledger", default=8.0)
    if reserve_mb < 0:
        raise ConfigError("ledger.reserve_mb must not be negative")

    broker_t = data.get("broker") or {}
    uplink_t = data.get("uplink") or {}
    settings = UplinkSettings(
        broker=_get(broker_t, "url", str, "broker", default="mqtt://127.0.0.1:1883"),
        username=_get(broker_t, "username", str, "broker", default=None),
        password=_get(broker_t, "password", str, "broker", default=None),
        ca=_broker_file(broker_t, "ca", base),
        cert=_broker_file(broker_t, "cert", base),
        key=_broker_file(broker_t, "key", base),
        batch=_get(uplink_t, "batch", int, "uplink", default=100),
        window=_get(uplink_t, "window", int, "uplink", default=envelope.SEQ_WINDOW),
        ack_timeout=_get(uplink_t, "ack_timeout_s", float, "uplink", default=5.0),
        heartbeat=_get(uplink_t, "heartbeat_s", float, "uplink", default=60.0),
    )
    if not settings.heartbeat > 0:
        raise ConfigError("uplink.heartbeat_s must be positive")
    if not 1 <= settings.batch <= 1000:
        raise ConfigError("uplink.batch must be 1..1000")
    if not settings.batch <= settings.window <= envelope.SEQ_WINDOW:
        raise ConfigError(f"uplink.window must be from uplink.batch to {envelope.SEQ_WINDOW} "
                          "(the gateway refuses records further beyond the acknowledged seq)")
    try:
        topics.parse_broker_url(settings.broker)
    except ValueError as err:
        raise ConfigError(f"broker.url: {err}") from None
    if not topics.broker_uses_tls(settings.broker):
        for name in ("ca", "cert", "key"):
            if getattr(settings, name):
                raise ConfigError(f"broker.{name} is for TLS: broker.url must be mqtts://HOST:PORT")
    if bool(settings.cert) != bool(settings.key):
        raise ConfigError("broker.cert and broker.key go together")

    counter = _counter(data.get("counter") or {}, base)
    face = _face(data.get("face") or {}, base)
    return AgentConfig(terminal, key, shop, ledger_path, int(reserve_mb * 1024 * 1024), settings, source,
                       counter=counter, face=face)


def _broker_file(table: dict, key: str, base: Path) -> str | None:
    text = _get(table, key, str, "broker", default=None)
    if text is None:
        return None
    path = Path(text) if Path(text).is_absolute() else base / text
    if not path.is_file():
        raise ConfigError(f"broker.{key}: no such file {path}")
    return str(path)


def _face(table: dict, base: Path) -> FaceSettings:
    def path(key):
        text = _get(table, key, str, "face", default=None)
        if text is None:
            return None
        return Path(text) if Path(text).is_absolute() else base / text
    out = FaceSettings(path("gallery"), path("key_file"),
                       _get(table, "max_distance", float, "face", default=0.45),
                       _get(table, "min_margin", float, "face", default=0.1))
    if not 0 < out.max_distance <= 1.5:
        raise ConfigError("face.max_distance must be in (0, 1.5]")
    if not 0 <= out.min_margin <= 1:
        raise ConfigError("face.min_margin must be 0..1")
    return out


def _counter(table: dict, base: Path) -> CounterSettings:
    deadline = _get(table, "deadline_ms", int, "counter", default=1500)
    if not 50 <= deadline <= 60000:
        raise ConfigError("counter.deadline_ms must be 50..60000")
    path = _get(table, "config_path", str, "counter", default=None)
    config_path = None
    if path is not None:
        config_path = Path(path) if Path(path).is_absolute() else base / path
    keys = _get(table, "registry_keys", list, "counter", default=[])
    parsed = []
    for i, text in enumerate(keys):
        try:
            key = bytes.fromhex(text) if isinstance(text, str) else b""
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ConfigError(f"counter.registry_keys[{i}] must be 64 hex digits (an Ed25519 public key)")
        parsed.append(key)
    clerk = _get(table, "clerk", str, "counter", default="clerk")
    if not schema.is_id(clerk):
        raise ConfigError("counter.clerk must be 1-64 characters of A-Z a-z 0-9 _ - . :")
    return CounterSettings(deadline, config_path, tuple(parsed), clerk)


def read_toml(path: Path) -> dict:
    """The config file's tables, or a ConfigError naming the file (the agent's
    and the kiosk's configs are read alike)."""
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: {err}") from None


def load(path: str | Path) -> AgentConfig:
    path = Path(path)
    data = read_toml(path)
    try:
        return parse(data, path.parent, path)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
