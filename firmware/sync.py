"""Config sync, terminal side: verify, reassemble and persist what the gateway
pushes on this terminal's `config` topic (protocols/configsync.py).

A section becomes current only when all its chunks arrived, the digest of the
whole matches and its content passes the same checks the decision code relies
on; anything else is logged and dropped, and the previous copy stays in use. After
a section is stored the agent re-publishes its status, whose `versions` map
tells the gateway what this terminal now runs.
"""

from __future__ import annotations

import logging
from typing import Callable

from firmware.configstore import ConfigStore
from protocols import configsync

log = logging.getLogger(__name__)


class ConfigReceiver:
    def __init__(self, store: ConfigStore, terminal: str, key: bytes, on_change: Callable[[str], None] = lambda name: None):
        self.store = store
        self.terminal = terminal
        self._key = key
        self._on_change = on_change
        self._assembler = configsync.Assembler()
        self.latest: dict[str, int] = {}   # versions the gateway's manifest announced
        self.rejected = 0
        self.last_rejected: tuple[str, str] | None = None   # (reason code, detail) of the last refusal

    def on_message(self, payload: bytes) -> None:
        """Called on the MQTT network thread for each message on the config topic."""
        try:
            message = configsync.decode(payload, self._key)
            if message["terminal"] != self.terminal:
                raise configsync.Invalid("terminal_mismatch", message["terminal"])
            if message["kind"] == "manifest":
                self.latest = {name: s["version"] for name, s in message["sections"].items()}
                return
            done = self._assembler.add(message)
        except configsync.Invalid as err:
            self._refused(err)
            return
        if done is None:
            return
        name, version, content = done
        try:
            self.store.apply_section(name, version, content)
        except configsync.Invalid as err:   # the gallery, checked deeper by the face code
            self._refused(err)
            return
        except Exception:
            log.exception("could not store config section terminal=%s section=%s", self.terminal, name)
            return
        self._on_change(name)

    def _refused(self, err: configsync.Invalid) -> None:
        self.rejected += 1
        self.last_rejected = (err.code, err.detail)
        log.warning("config message rejected terminal=%s reason=%s detail=%s", self.terminal, err.code, err.detail)

    def behind(self) -> list[str]:
        """Sections the gateway announced in a version this terminal does not run."""
        have = self.store.versions()
        return sorted(name for name, version in self.latest.items() if have.get(name) != version)
