"""A district for the enforcement tests: a real Mosquitto with per-terminal
credentials and ACLs, the real gateway as an OS process (so it can be killed),
and terminal agents in this process, driven through their public counter API.

Subjects, shops and the test policy params are loaded with the gateway's own
CLIs before it starts, as an operator would."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware.agent import Agent
from firmware.config import parse
from gateway.enforcement import fleet
from gateway.store import Store
from protocols import envelope, topics
from simulator.broker import Mosquitto
from simulator.processes import GatewayProcess, provision_terminals, terminal_config_text, wait_for
from tests.support import quota_fixtures as fx

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_PASSWORD = "gateway-test-password"
SYNCED = ("catalogue", "params", "shop", "subjects", "balances", "revocations", "gallery")


def gateway_cli(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc


class QuotaDistrict:
    def __init__(self, root: Path, names=("T001", "T002"), subjects: dict[str, int] | None = None,
                 deadline_ms: int = 1500, registry_keys: tuple[str, ...] = ()):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = self.root / "gateway.db"
        self.names = list(names)
        self.creds = {c.terminal: c for c in provision_terminals(self.db, self.names)}
        fx.add_shops(self.db, {f"shop-{n}": (fx.TOWN, False) for n in self.names})
        self.params_file = self.root / "params.json"
        self.params_file.write_text(json.dumps(fx.params()), "utf-8")
        gateway_cli("policy", "import", str(self.params_file), "--db", str(self.db))
        subjects_file = fx.write_jsonl(self.root / "subjects.jsonl", fx.subjects(subjects or {}))
        gateway_cli("subjects", "import", str(subjects_file), "--db", str(self.db))
        # the registry keys the gateway checks the cards of authorization requests with: the test
        # registry's (fx.issue_card, fx.card_identity) and the district's own
        gateway_cli("subjects", "keys", "add", fx.registry_public_hex(), *registry_keys, "--db", str(self.db))
        store = Store(self.db)
        passwd, acl = fleet.write_broker_auth(store, self.root / "broker-auth", GATEWAY_PASSWORD)
        store.close()
        self.broker = Mosquitto(self.root / "broker", password_file=passwd, acl_file=acl).start()
        self.gateway = GatewayProcess(self.db, self.broker.url, self.root / "gateway.log",
                                      username=fleet.GATEWAY_USER, password=GATEWAY_PASSWORD)
        self.deadline_ms = deadline_ms
        self.registry_keys = registry_keys
        self.agents: dict[str, Agent] = {}

    # -- processes

    def start(self) -> "QuotaDistrict":
        self.gateway.start()
        for name in self.names:
            self.start_agent(name)
        for name in self.names:
            self.wait_config(name)
        return self

    def config_text(self, name: str) -> str:
        creds = self.creds[name]
        text = terminal_config_text(creds, self.broker.url, self.root / f"{name}.ledger.db", ack_timeout=2.0,
                                    shop=f"shop-{name}")
        keys = ", ".join(f'"{k}"' for k in self.registry_keys)
        return text + f"\n[counter]\ndeadline_ms = {self.deadline_ms}\nregistry_keys = [{keys}]\nclerk = \"c1\"\n"

    def start_agent(self, name: str) -> Agent:
        config = parse(tomllib.loads(self.config_text(name)), self.root)
        agent = Agent(config)
        agent.start()
        self.agents[name] = agent
        return agent

    def stop_agent(self, name: str) -> None:
        self.agents.pop(name).stop()

    def _gateway_connects(self) -> int:
        log = self.root / "gateway.log"
        return log.read_text(errors="replace").count("gateway connected to") if log.exists() else 0

    def restart_gateway(self) -> None:
        """Start the gateway process again and wait until it is on the broker."""
        before = self._gateway_connects()
        self.gateway.start()
        wait_for(lambda: self._gateway_connects() > before, 30, "gateway connected")

    def mend(self, timeout: float = 30) -> "QuotaDistrict":
        """Bring back whatever a test took away (the broker, the gateway, an
        agent) and wait until every agent is on the broker again: a test that
        kills parts restores them itself, but one that fails half-way must not
        leave the next test a broken district, and agents reconnect to a
        restarted broker on their own time."""
        if self.broker.proc is None or self.broker.proc.poll() is not None:
            self.broker.start()
        if self.gateway.proc is None or self.gateway.proc.poll() is not None:
            self.restart_gateway()
        for name in self.names:
            if name not in self.agents:
                self.start_agent(name)
        wait_for(lambda: all(a.uplink.connected for a in self.agents.values()), timeout, "every agent on the broker")
        return self

    def close(self) -> None:
        for agent in list(self.agents.values()):
            try:
                agent.stop()
            except Exception:
                pass
        self.gateway.kill()
        self.broker.kill()

    # -- observing

    def wait_config(self, name: str, timeout: float = 30, **versions: int) -> dict:
        """Until the terminal runs every section (and at least the given versions)."""
        store = self.agents[name].config_store

        def ready():
            have = store.versions()
            return all(s in have for s in SYNCED) and all(have.get(s, -1) >= v for s, v in versions.items()) and have
        return wait_for(ready, timeout, f"{name} config synced {versions}")

    def wait_acked(self, name: str, timeout: float = 30) -> None:
        """Acknowledged by ingest, and applied by the gateway's followers (the
        quota ledger, the rules), which run just after ingest's commit."""
        agent = self.agents[name]
        wait_for(lambda: agent.ledger.backlog == 0, timeout, f"{name} ledger acknowledged")

        def followed() -> bool:
            top = self.query("SELECT coalesce(max(rid), 0) FROM records")[0][0]
            rows = dict(self.query("SELECT name, rid FROM followers"))
            return rows.get("quota", -1) >= top and rows.get("supervision", -1) >= top
        wait_for(followed, timeout, "the gateway's followers to catch up")

    def query(self, sql: str, args=()) -> list[tuple]:
        conn = sqlite3.connect(self.db, timeout=30)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def balance(self, subject: str) -> dict:
        out = gateway_cli("balance", subject, "--db", str(self.db))
        return json.loads(out.stdout)["categories"]

    def retained(self, topic: str, timeout: float = 5.0, user: str | None = None) -> bytes | None:
        """The retained message on a topic (None if none), read as the gateway
        user, or as terminal `user` for the topics only it may read."""
        got: list[bytes] = []
        done = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{time.monotonic_ns()}",
                             protocol=mqtt.MQTTv311)
        if user:
            client.username_pw_set(user, self.creds[user].mqtt_password)
        else:
            client.username_pw_set(fleet.GATEWAY_USER, GATEWAY_PASSWORD)

        def on_message(c, u, message):
            if message.retain:
                got.append(message.payload)
                done.set()

        client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        client.on_message = on_message
        client.connect("127.0.0.1", self.broker.port)
        client.loop_start()
        try:
            done.wait(timeout)
        finally:
            client.loop_stop()
            client.disconnect()
        return got[0] if got else None

    def reported_versions(self, name: str) -> dict:
        payload = self.retained(topics.topic(name, topics.STATUS))
        return envelope.decode_status(payload).get("versions", {}) if payload else {}
