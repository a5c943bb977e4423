"""Deliberately broken terminals, for proving the conformance kit can fail a
terminal (tests/test_conformance.py). Test-only: each is the real agent with
one part swapped for a subclass that makes one classic mistake, so the kit's
verdict can only come from that mistake.

- `PubackUplink`: moves its watermark when the broker PUBACKs a batch, as if
  the broker's receipt were the gateway's commit (docs/protocol.md: "The
  terminal moves its watermark only on this ack, never on the broker's
  PUBACK").
- `SeqFromWatermarkLedger`: numbers records from its watermark after a
  restart, dropping the rows nobody acknowledged, as a terminal does whose
  outbox lives in memory: a seq the gateway may already hold comes back with
  other content.
- `unchecked-macs` (`UncheckedAuthClient` and `UncheckedConfigReceiver`):
  parses authorization answers and config messages but never checks their
  MACs, so anyone who can publish on its topics approves its sales and
  rewrites its configuration.
"""

from __future__ import annotations

import json

from firmware.authclient import AuthClient
from firmware.ledger import Ledger
from firmware.sync import ConfigReceiver
from firmware.uplink import Uplink
from protocols import authz, configsync, envelope


class PubackUplink(Uplink):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._last_seq_of_mid: dict[int, int] = {}
        publish = self.client.publish

        def publish_and_remember(topic, payload=None, qos=0, retain=False, properties=None):
            info = publish(topic, payload, qos, retain, properties)
            if topic == self._up:
                self._last_seq_of_mid[info.mid] = json.loads(payload)["records"][-1]["seq"]
            return info

        self.client.publish = publish_and_remember
        self.client.on_publish = self._on_puback

    def _on_puback(self, client, userdata, mid, reason_code, properties):
        last = self._last_seq_of_mid.pop(mid, None)
        if last is not None:
            self.ledger.mark_acked(last)   # the mistake: the broker has it, so "it's delivered"


class SeqFromWatermarkLedger(Ledger):
    def _load_meta(self) -> None:
        super()._load_meta()
        acked = self._acked
        self.db.execute("DROP TRIGGER IF EXISTS ledger_no_delete")
        self.db.execute("DELETE FROM ledger WHERE seq > ?", [acked])   # the mistake: unacked rows are "outbox"
        row = self.db.execute("SELECT digest FROM ledger WHERE seq = ?", [acked]).fetchone()
        self._next_seq = acked + 1
        self._head_digest = row[0] if row else envelope.GENESIS
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('next_seq', ?)", [str(acked + 1)])
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('head', ?)", [self._head_digest])


class UncheckedAuthClient(AuthClient):
    def on_message(self, payload: bytes) -> None:
        response = authz._parse(payload, authz.RESPONSE, "response")   # the mistake: no MAC check
        with self._lock:
            slot = self._pending.get(response["id"])
        if slot is not None:
            slot[1] = response
            slot[0].set()


class UncheckedConfigReceiver(ConfigReceiver):
    def on_message(self, payload: bytes) -> None:
        message = configsync.envelope.parse_json(payload, configsync.MAX_CONFIG_BYTES, configsync.Invalid)
        if message.get("kind") != "chunk":
            return
        done = self._assembler.add(message)   # the mistake: no MAC check
        if done is not None:
            name, version, content = done
            self.store.apply_section(name, version, content)
            self._on_change(name)


BROKEN = {"puback-watermark": [("Uplink", PubackUplink)], "seq-reuse": [("Ledger", SeqFromWatermarkLedger)],
          "unchecked-macs": [("AuthClient", UncheckedAuthClient), ("ConfigReceiver", UncheckedConfigReceiver)]}


def install(name: str) -> None:
    """Swap the broken part(s) into the agent (in this process only)."""
    import firmware.agent

    for attribute, cls in BROKEN[name]:
        setattr(firmware.agent, attribute, cls)
