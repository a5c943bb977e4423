"""The terminal's configuration file (JSON: MicroPython has no TOML reader),
checked at load with an error that names the key and the file. The format is
documented in docs/mcu.md."""

import json

from protocols import topics


class ConfigError(Exception):
    pass


REQUIRED = (("terminal", "id"), ("terminal", "key"), ("broker", "url"), ("ledger", "dir"), ("config", "dir"))


def load(path):
    try:
        with open(path) as f:
            config = json.load(f)
    except OSError as err:
        raise ConfigError("%s: cannot read (%s)" % (path, err))
    except ValueError as err:
        raise ConfigError("%s: not JSON (%s)" % (path, err))
    if not isinstance(config, dict):
        raise ConfigError("%s: a JSON object is expected" % path)
    for section, key in REQUIRED:
        if not isinstance(config.get(section), dict) or not config[section].get(key):
            raise ConfigError("%s: %s.%s is required" % (path, section, key))
    if not topics.is_terminal_id(config["terminal"]["id"]):
        raise ConfigError("%s: terminal.id: %s" % (path, topics.TERMINAL_ID_RULE))
    try:
        key = bytes.fromhex(config["terminal"]["key"])
    except (ValueError, TypeError):
        key = b""
    if len(key) < 16:
        raise ConfigError("%s: terminal.key: the terminal's record key in hex (from gateway terminal add)" % path)
    try:
        topics.parse_broker_url(config["broker"]["url"])
    except ValueError as err:
        raise ConfigError("%s: broker.url: %s" % (path, err))
    broker = config["broker"]
    if topics.broker_uses_tls(broker["url"]) and not broker.get("ca"):
        raise ConfigError("%s: broker.ca: an mqtts:// broker is checked against a CA certificate file" % path)
    if not topics.broker_uses_tls(broker["url"]) and (broker.get("ca") or broker.get("cert")):
        raise ConfigError("%s: broker.ca/cert given for %s: TLS needs an mqtts:// URL" % (path, broker["url"]))
    if bool(broker.get("cert")) != bool(broker.get("key")):
        raise ConfigError("%s: broker.cert and broker.key go together" % path)
    menu = config.get("counter", {}).get("menu", []) if isinstance(config.get("counter"), dict) else []
    if not isinstance(menu, list) or len(menu) > 6 or not all(isinstance(p, str) and p for p in menu):
        raise ConfigError("%s: counter.menu: at most 6 product ids (the OLED menu of the shop's top products)" % path)
    deposit = config.get("counter", {}).get("deposit_fen", 0) if isinstance(config.get("counter"), dict) else 0
    if type(deposit) is not int or deposit < 0:
        raise ConfigError("%s: counter.deposit_fen: whole fen paid back per returned container, 0 or more" % path)
    return config
