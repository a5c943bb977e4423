"""The `[kiosk]` table of the agent's TOML (shop name, device URLs, voice,
clerks and their PIN hashes, the UI's loopback address), validated at load
with the key and the file named in the error."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from pathlib import Path

from firmware.clerk_pins import PinHashError, parse_pin_hash
from firmware.config import AgentConfig, ConfigError, parse, read_toml

log = logging.getLogger(__name__)


@dataclass
class Clerk:
    id: str
    name: str
    pin_hash: str               # scrypt$…; a 64-hex `pin_sha256` of old configs signs nobody in
    owner: bool = False         # may set the shop's prices (firmware/prices.py)

    @property
    def legacy(self) -> bool:
        return not self.pin_hash.startswith("scrypt$")


@dataclass
class KioskSettings:
    shop_name: str = ""
    reader: str | None = None            # PN532 port URL
    printer: str | None = None           # ESC/POS printer URL
    printer_columns: int = 32            # 58 mm paper; 48 for 80 mm
    camera: str | None = None            # camera URL (file:// stills for the twin)
    voice: bool = True
    voice_cache: Path | None = None
    player: tuple[str, ...] = ("aplay", "-q")   # empty: the recording twin
    clerks: list[Clerk] = field(default_factory=list)
    deposit_fen: int = 50                # paid back per returned pesticide container
    http: str = "127.0.0.1:8080"
    lock_after: int = 5                  # wrong PINs before a lock-out (PinLockout)
    lock_seconds: float = 30.0           # the first lock; each next one twice as long
    lock_max_seconds: float = 3600.0
    lock_forget_s: float = 86400.0       # a day without a wrong PIN: back to the first lock
    pin_state: Path | None = None        # the lock's file; default beside the ledger


def _settings(table: dict, base: Path, source: Path | None) -> KioskSettings:
    where = "kiosk"

    def get(key, kind, default):
        if key not in table:
            return default
        value = table[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise ConfigError(f"{where}.{key} must be {kind.__name__}, got {value!r}")
        return value

    clerks = []
    for i, entry in enumerate(get("clerks", list, [])):
        key = f"{where}.clerks[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not (0 < len(entry["id"]) <= 64):
            raise ConfigError(f"{key} needs id (a string of 1-64 characters) and pin_hash")
        if any(c.id == entry["id"] for c in clerks):
            raise ConfigError(f"{key}: clerk id {entry['id']!r} listed twice")
        name = entry.get("name") or entry["id"]
        owner = entry.get("owner", False)
        if not isinstance(owner, bool):
            raise ConfigError(f"{key}.owner must be true or false")
        if isinstance(entry.get("pin_hash"), str):
            try:
                parse_pin_hash(entry["pin_hash"])
            except PinHashError as err:
                raise ConfigError(f"{key}.pin_hash {err}") from None
            clerks.append(Clerk(entry["id"], name, entry["pin_hash"], owner))
        elif isinstance(entry.get("pin_sha256"), str):
            # The old fast hash: loaded so the owner is told, never used to sign
            # in (checking it would tell a guesser the PIN the owner is likely
            # to keep). The agent still starts: its uplink has sales to deliver.
            log.warning("%s: clerk %s has an old pin_sha256 entry and cannot sign in; replace it with the "
                        "pin_hash line of `python -m firmware kiosk-pin %s`", source or "kiosk config",
                        entry["id"], entry["id"])
            clerks.append(Clerk(entry["id"], name, "sha256$" + entry["pin_sha256"], owner))
        else:
            raise ConfigError(f"{key} needs id and pin_hash (python -m firmware kiosk-pin {entry['id']})")
    cache = get("voice_cache", str, None)
    columns = get("printer_columns", int, 32)
    if columns not in (32, 42, 48):
        raise ConfigError(f"{where}.printer_columns must be 32 (58 mm), 42 or 48 (80 mm)")
    return KioskSettings(
        shop_name=get("shop_name", str, ""),
        reader=get("reader", str, None), printer=get("printer", str, None), printer_columns=columns,
        camera=get("camera", str, None), voice=get("voice", bool, True),
        voice_cache=(base / cache) if cache else None,
        player=tuple(get("player", list, ["aplay", "-q"])), clerks=clerks,
        deposit_fen=get("deposit_fen", int, 50), http=_loopback(get("http", str, "127.0.0.1:8080"), f"{where}.http"))


def _loopback(address: str, key: str) -> str:
    """The kiosk UI is for this terminal's own screen: a loopback HOST:PORT."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]").lower()
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{key} must be a loopback HOST:PORT (127.0.0.1, [::1] or localhost), got {address!r}")
    return address


def load(path: str | Path) -> tuple[AgentConfig, KioskSettings]:
    """The agent's TOML with its `[kiosk]` table, each validated with the key named:

        [kiosk]
        shop_name = "塘栖农资店"
        reader = "/dev/ttyAMA0"                   # PN532 (hardware/README.md)
        printer = "serial:///dev/ttyUSB0?baud=9600"
        camera = "v4l2://0"
        voice = true
        player = ["aplay", "-q"]                  # [] records prompts instead of playing
        deposit_fen = 50
        http = "127.0.0.1:8080"
        [[kiosk.clerks]]
        id = "c1"
        name = "李梅"
        pin_hash = "scrypt$32768$8$1$…$…"          # python -m firmware kiosk-pin c1
        owner = true                              # may set prices (the 价格 screen)
    """
    path = Path(path)
    data = read_toml(path)
    try:
        return parse(data, path.parent, path), _settings(data.get("kiosk") or {}, path.parent, path)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
