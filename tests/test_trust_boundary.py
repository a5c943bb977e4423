"""The trust boundary at the broker (docs/security.md): ids provisioned to one
strict syntax and never a gateway user's, a client id bound to its username,
MQTT over TLS from a throwaway CA made per run, client certificates whose CN
is the terminal id, a payload limit, and acks a terminal believes only with
its own key's MAC. A real Mosquitto on the generated configuration, the
gateway and the agents as real processes."""

from __future__ import annotations

import json
import os
import ssl
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.enforcement import fleet, pki
from gateway.store import Store
from protocols import canonical, envelope, topics, transport
from simulator.broker import Mosquitto
from simulator.processes import GatewayProcess, TerminalProcess, provision_terminals, terminal_config_text, wait_for

ROOT = Path(__file__).resolve().parents[1]
GATEWAY_PASSWORD = "gateway-trust-test"


def gateway_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------- provisioning

@pytest.mark.parametrize("name", ["gateway", "gateway-supervise", "Gateway", "GATEWAY-2", "gateway.ingest",
                                  "gatewayX"])
def test_terminal_add_refuses_the_gateways_names(tmp_path, name):
    db = str(tmp_path / "gw.db")
    proc = gateway_cli("terminal", "--db", db, "add", name)
    assert proc.returncode == 2
    assert "reserved" in proc.stderr and name in proc.stderr
    assert gateway_cli("terminal", "--db", db, "list").stdout == ""


@pytest.mark.parametrize("name", ["T:1", "T/1", "T+1", "T#1", "T 1", "T\t1", "-T1", ".T1", "_T1", "x" * 65, "终端1",
                                  "T1\n"])
def test_terminal_add_refuses_malformed_ids_with_a_clear_error(tmp_path, name):
    db = str(tmp_path / "gw.db")
    proc = gateway_cli("terminal", "--db", db, "add", "--", name)
    assert proc.returncode == 2
    assert "malformed" in proc.stderr and "A-Z a-z 0-9 _ - ." in proc.stderr
    assert gateway_cli("terminal", "--db", db, "list").stdout == ""


def test_terminal_add_accepts_ids_of_the_documented_syntax(tmp_path):
    db = str(tmp_path / "gw.db")
    for name in ("T0001", "T-330110.0001_a", "9", "x" * 64):
        assert gateway_cli("terminal", "--db", db, "add", name).returncode == 0, name
    assert len(gateway_cli("terminal", "--db", db, "list").stdout.splitlines()) == 4


def test_passwd_holds_each_gateway_user_once_and_never_an_id_stored_before_the_check(tmp_path):
    """A database from before the check may hold `gateway` or `a:b` as terminals:
    they are left out, so no terminal password gets the gateway's permissions."""
    store = Store(tmp_path / "gw.db")
    fleet.provision(store, "T001", None, 0)
    store.add_terminal("gateway", "00" * 32, None, fleet.mosquitto_hash("stolen"), 0)
    store.add_terminal("a:b", "00" * 32, None, fleet.mosquitto_hash("x"), 0)
    passwd, _ = fleet.write_broker_auth(store, tmp_path / "auth", GATEWAY_PASSWORD)
    store.close()
    users = [line.split(":", 1)[0] for line in passwd.read_text().splitlines()]
    assert users == ["gateway", "gateway-supervise", "T001"]


def test_broker_auth_writes_a_complete_mosquitto_conf(tmp_path):
    db = str(tmp_path / "gw.db")
    assert gateway_cli("terminal", "--db", db, "add", "T001").returncode == 0
    assert gateway_cli("pki", "--out", str(tmp_path / "pki"), "init").returncode == 0
    out = tmp_path / "broker"
    proc = gateway_cli("terminal", "--db", db, "broker-auth", "--out", str(out), "--pki", str(tmp_path / "pki"),
                       "--port", "11883", "--tls-port", "18883", env={"GATEWAY_MQTT_PASSWORD": "pw"})
    assert proc.returncode == 0, proc.stderr
    conf = (out / "mosquitto.conf").read_text()
    lines = [line for line in conf.splitlines() if line and not line.startswith("#")]
    listeners = [i for i, line in enumerate(lines) if line.startswith("listener ")]
    assert [lines[i] for i in listeners] == ["listener 11883 127.0.0.1", "listener 18883", "listener 18884"]
    for start, end in zip(listeners, listeners[1:] + [len(lines)]):
        assert "use_username_as_clientid true" in lines[start:end]   # every listener binds client ids
    assert "allow_anonymous false" in lines
    assert f"password_file {(out / 'passwd').resolve()}" in lines and f"acl_file {(out / 'acl').resolve()}" in lines
    assert "message_size_limit 524288" in lines
    cert_listener = lines[listeners[2]:]
    assert {"require_certificate true", "use_identity_as_username true", "tls_version tlsv1.2"} <= set(cert_listener)
    assert f"crlfile {(out / 'crl.pem').resolve()}" in cert_listener
    # keys and generated files 0600, directories 0700; the CA's key stays with the PKI
    assert mode(out) == 0o700 and mode(tmp_path / "pki") == 0o700
    for path in list(out.iterdir()) + list((tmp_path / "pki").iterdir()):
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path
    assert not (out / "ca.key").exists()
    acl = (out / "acl").read_text()
    assert "user gateway-supervise\ntopic read agri/v1/t/+/status\n" in acl


def test_pki_init_issue_and_the_certificates_it_makes(tmp_path):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    out = tmp_path / "pki"
    assert gateway_cli("pki", "--out", str(out), "init").returncode == 0
    broker = x509.load_pem_x509_certificate((out / "broker.crt").read_bytes())
    san = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    proc = gateway_cli("pki", "--out", str(out), "issue", "T001")
    assert proc.returncode == 0, proc.stderr
    assert f'cert = "{(out / "T001.crt").resolve()}"' in proc.stdout
    cert = x509.load_pem_x509_certificate((out / "T001.crt").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "T001"
    assert gateway_cli("pki", "--out", str(out), "issue", "T001").returncode == 2   # no silent replacement
    assert gateway_cli("pki", "--out", str(out), "issue", "a:b").returncode == 2
    assert gateway_cli("pki", "--out", str(out), "init").returncode == 2            # nor of the CA


def test_the_terminals_broker_table_takes_a_ca_and_a_client_certificate_for_mqtts_only(tmp_path):
    from firmware.config import ConfigError, parse

    for name in ("ca.crt", "T001.crt", "T001.key"):
        (tmp_path / name).write_text("x")

    def config(broker: dict, terminal: str = "T001"):
        return parse({"terminal": {"id": terminal, "key": "00" * 32}, "broker": broker}, tmp_path)

    uplink = config({"url": "mqtts://broker.example:8884", "ca": "ca.crt", "cert": "T001.crt", "key": "T001.key"}).uplink
    assert (uplink.ca, uplink.cert, uplink.key) == tuple(str(tmp_path / n) for n in ("ca.crt", "T001.crt", "T001.key"))
    for broker, problem in (({"url": "mqtt://b:1883", "ca": "ca.crt"}, "broker.ca is for TLS"),
                            ({"url": "mqtts://b", "cert": "T001.crt"}, "broker.cert and broker.key go together"),
                            ({"url": "mqtts://b", "ca": "missing.crt"}, "broker.ca: no such file")):
        with pytest.raises(ConfigError, match=problem):
            config(broker)
    with pytest.raises(ConfigError, match="terminal.id"):
        config({}, terminal="T:1")


# ---------------------------------------------------------------- a real broker on the generated configuration

class World:
    """Terminals T001, T002 provisioned, a throwaway CA, the broker on the generated configuration."""

    def __init__(self, root: Path):
        self.root = root
        self.db = root / "gateway.db"
        self.creds = {c.terminal: c for c in provision_terminals(self.db, ["T001", "T002"])}
        self.pki = pki.Pki(root / "pki")
        self.pki.init()
        store = Store(self.db)
        try:
            self.broker = Mosquitto.generated(root / "broker", store, GATEWAY_PASSWORD, pki_dir=self.pki.dir)
        finally:
            store.close()
        self.broker.start()
        self.clients: list[mqtt.Client] = []
        self.processes: list = []

    def client(self, url: str, username: str | None = None, password: str | None = None, client_id: str = "",
               clean: bool = True, cert: str | None = None, ca: str | None = "default") -> mqtt.Client:
        """A paho client, connected (or refused) within 10 s; events in `.events`."""
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
                        protocol=mqtt.MQTTv311)
        if username:
            c.username_pw_set(username, password)
        c.events, c.messages = [], []
        c.connected, c.closed = threading.Event(), threading.Event()

        def on_connect(cl, u, flags, rc, p):
            c.events.append(("connack", str(rc)))
            if not rc.is_failure:
                c.connected.set()

        def on_disconnect(cl, u, flags, rc, p):
            c.events.append(("disconnect", str(rc)))
            c.closed.set()

        c.on_connect, c.on_disconnect = on_connect, on_disconnect
        c.on_message = lambda cl, u, m: c.messages.append((m.topic, m.payload))
        files = {"ca": str(self.broker.ca) if ca == "default" else ca}
        if cert:
            files.update(cert=str(self.root / "pki" / f"{cert}.crt"), key=str(self.root / "pki" / f"{cert}.key"))
        host, port = transport.prepare(c, url, **files)
        c.reconnect_delay_set(30, 60)   # a client taken over must stay off, so the test sees it
        self.clients.append(c)
        try:
            c.connect(host, port, keepalive=30)
        except (OSError, ssl.SSLError) as err:
            c.events.append(("refused", repr(err)))
            c.closed.set()
            return c
        c.loop_start()
        wait_for(lambda: c.connected.is_set() or c.closed.is_set(), 10, "a CONNACK or a refusal")
        return c

    def gateway_client(self, **kw) -> mqtt.Client:
        return self.client(self.broker.tls_url, fleet.GATEWAY_USER, GATEWAY_PASSWORD, client_id="gateway", **kw)

    def terminal_client(self, name: str, client_id: str | None = None, url: str | None = None) -> mqtt.Client:
        return self.client(url or self.broker.tls_url, name, self.creds[name].mqtt_password,
                           client_id=client_id or f"terminal-{name}")

    def broker_log(self) -> str:
        return self.broker.log_path.read_text(errors="replace") if self.broker.log_path.exists() else ""

    def close(self) -> None:
        for proc in self.processes:
            proc.kill()
        for c in self.clients:
            c.loop_stop()
            try:
                c.disconnect()
            except Exception:
                pass
        self.broker.kill()


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.close()


def subscribed(client: mqtt.Client, topic: str) -> None:
    done = threading.Event()
    client.on_subscribe = lambda *a: done.set()
    client.subscribe(topic, 1)
    assert done.wait(10)


def test_a_terminal_cannot_take_over_the_gateways_or_another_terminals_client_id(world):
    gw = world.gateway_client(clean=False)   # the gateway's persistent session
    subscribed(gw, topics.ROOT + "/+/" + topics.UP)
    t2 = world.terminal_client("T002")
    assert gw.connected.is_set() and t2.connected.is_set()

    # T001, with its own password, asks for the gateway's client id, then T002's,
    # with a clean session (which for the real owner would wipe its queue)
    as_gateway = world.terminal_client("T001", client_id="gateway")
    as_t002 = world.terminal_client("T001", client_id="T002")
    assert as_t002.connected.is_set()   # admitted, as T001, not as who it claimed
    time.sleep(1.0)                     # a takeover would have dropped them by now
    assert not gw.closed.is_set() and not t2.closed.is_set(), (gw.events, t2.events)
    assert as_gateway.closed.is_set()   # T001's two connections share T001's id: the second took the first's
    log = world.broker_log()
    assert "Client gateway already connected" not in log and "Client T002 already connected" not in log
    assert "as T001 (" in log

    # the gateway's session lives on: what T002 publishes now still reaches it
    t2.publish(topics.topic("T002", topics.UP), b"after the attempts", qos=1).wait_for_publish(10)
    wait_for(lambda: (topics.topic("T002", topics.UP), b"after the attempts") in gw.messages, 10,
             "T002's message at the gateway")


def test_the_gateway_and_a_terminal_run_over_tls_with_the_generated_ca(world):
    """The real gateway and a real agent, both over mqtts:// with the CA made for
    this run: the agent's sales are stored and acknowledged."""
    gateway = GatewayProcess(world.db, world.broker.tls_url, world.root / "gateway.log", username=fleet.GATEWAY_USER,
                             password=GATEWAY_PASSWORD, ca=world.broker.ca).start()
    world.processes.append(gateway)
    config = world.root / "T001.toml"
    ledger = world.root / "T001.ledger.db"
    config.write_text(terminal_config_text(world.creds["T001"], world.broker.tls_url, ledger, ca=world.broker.ca))
    agent = TerminalProcess(config, world.root / "T001.log", rate=20, count=30).start()
    world.processes.append(agent)
    wait_for(lambda: _acked(world.db, "T001") >= 30, 60, "T001's 30 sales stored and acknowledged")
    log = world.broker_log()
    assert f"on port {world.broker.tls_port}" in log
    assert "as gateway-supervise (" in log   # the supervision child as its own user


def test_a_plain_connection_to_the_tls_port_fails(world):
    for port in (world.broker.tls_port, world.broker.cert_port):
        plain = world.client(f"mqtt://127.0.0.1:{port}", "T001", world.creds["T001"].mqtt_password, ca=None)
        assert not plain.connected.is_set() and plain.closed.is_set(), plain.events
    assert world.terminal_client("T001").connected.is_set()   # the same credentials over TLS


def test_a_broker_with_a_certificate_from_another_ca_is_refused(world, tmp_path):
    """Someone on the network posing as the broker: the client checks the chain."""
    other = pki.Pki(tmp_path / "other-ca")
    other.init()
    c = world.client(world.broker.tls_url, "T001", world.creds["T001"].mqtt_password, ca=str(other.ca_cert))
    assert not c.connected.is_set()
    assert any("CERTIFICATE_VERIFY_FAILED" in str(e) for e in c.events), c.events


def test_a_client_certificate_is_the_terminal_id_and_cannot_publish_as_another(world):
    world.pki.issue("T001")
    gw = world.gateway_client()
    subscribed(gw, topics.ROOT + "/+/" + topics.UP)
    # no password at all; and a username naming T002 changes nothing: the CN is the username
    t1 = world.client(world.broker.cert_url, "T002", "not-a-password", cert="T001")
    assert t1.connected.is_set(), t1.events
    t1.publish(topics.topic("T001", topics.UP), b"as T001", qos=1).wait_for_publish(10)
    wait_for(lambda: any(p == b"as T001" for _, p in gw.messages), 10, "T001's own message")
    # refused by the ACL (Mosquitto 2.0 answers a PUBACK with a reason code, after
    # which paho drops its 3.1.1 connection: either way nothing goes through)
    t1.publish(topics.topic("T002", topics.UP), b"as T002", qos=1)
    time.sleep(0.5)
    assert [p for _, p in gw.messages] == [b"as T001"]
    assert "as T001 (" in world.broker_log()
    # the certificate listener wants a certificate: a password alone does not do
    no_cert = world.client(world.broker.cert_url, "T002", world.creds["T002"].mqtt_password)
    assert not no_cert.connected.is_set()


def test_a_revoked_certificate_is_refused_after_the_broker_reloads(world):
    world.pki.issue("T002")
    assert world.client(world.broker.cert_url, cert="T002").connected.is_set()
    assert gateway_cli("pki", "--out", str(world.pki.dir), "revoke", "T002").returncode == 0
    store = Store(world.db)
    try:
        world.broker.regenerate(store)   # copies the new CRL next to the configuration, SIGHUP
    finally:
        store.close()
    time.sleep(0.5)
    assert not world.client(world.broker.cert_url, cert="T002").connected.is_set()


def test_the_broker_drops_payloads_over_its_limit(world):
    gw = world.gateway_client()
    subscribed(gw, topics.ROOT + "/+/" + topics.UP)
    up = topics.topic("T001", topics.UP)
    # dropped by the broker (and with Mosquitto 2.0 and paho the sender's connection ends)
    world.terminal_client("T001").publish(up, b"x" * (600 * 1024), qos=1)
    time.sleep(1.0)
    # a batch over the protocol's 256 KiB but inside the broker's limit still arrives,
    # for the gateway to quarantine with payload_too_large where an operator sees it
    world.terminal_client("T001").publish(up, b"y" * (300 * 1024), qos=1).wait_for_publish(10)
    wait_for(lambda: gw.messages, 10, "the 300 KiB message")
    time.sleep(0.3)
    assert [len(p) for _, p in gw.messages] == [300 * 1024]


# ---------------------------------------------------------------- forged acks

def _acked(db: Path, terminal: str) -> int:
    store = Store(db)
    try:
        return next((t["acked_upto"] for t in store.terminals() if t["id"] == terminal), 0)
    finally:
        store.close()


def _watermark(ledger: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(ledger.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'acked'").fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


def test_a_forged_ack_does_not_move_the_terminals_watermark(world):
    config = world.root / "T001.toml"
    ledger = world.root / "T001.ledger.db"
    config.write_text(terminal_config_text(world.creds["T001"], world.broker.tls_url, ledger, ca=world.broker.ca))
    agent = TerminalProcess(config, world.root / "T001.log", rate=50, count=20).start()
    world.processes.append(agent)
    wait_for(lambda: agent.approved_count() >= 20, 30, "20 sales at T001")
    head = max(agent.approved)
    ack_topic = topics.topic("T001", topics.ACK)
    t1_key, t2_key = (bytes.fromhex(world.creds[n].key_hex) for n in ("T001", "T002"))
    unsigned = {"v": 1, "terminal": "T001", "upto": head, "seen": head}
    forged = [
        canonical.encode(unsigned),                                                   # no MAC
        canonical.encode(dict(unsigned, mac="0" * 64)),                               # a made-up MAC
        envelope.encode_ack(t2_key, "T001", head, head),                              # another terminal's key
        canonical.encode(dict(unsigned, mac=envelope.mac(t1_key, canonical.encode(unsigned)))),  # a record's prefix
        canonical.encode(dict(json.loads(envelope.encode_ack(t1_key, "T001", 1, 1)), upto=head)),  # altered
    ]
    # who can publish on T001's ack topic at all: only the gateway's user (here a
    # stand-in for a stolen gateway password or a broker in the wrong hands)
    gw = world.gateway_client()
    for payload in forged:
        gw.publish(ack_topic, payload, qos=1, retain=True).wait_for_publish(10)
    # T002 with its own credentials: the ACL drops it before T001 ever sees it
    t2 = world.terminal_client("T002")
    t2.publish(ack_topic, envelope.encode_ack(t1_key, "T001", head, head), qos=1, retain=True).wait_for_publish(10)

    log = world.root / "T001.log"
    wait_for(lambda: log.read_text(errors="replace").count("ack refused terminal=T001") >= len(forged), 20,
             "T001 refusing every forged ack")
    text = log.read_text(errors="replace")
    assert "reason=schema_invalid" in text and "reason=bad_mac" in text
    time.sleep(0.5)
    assert _watermark(ledger) == 0

    # the real gateway's ack, MACed with T001's key, moves it
    gw.disconnect()
    gateway = GatewayProcess(world.db, world.broker.tls_url, world.root / "gateway.log", username=fleet.GATEWAY_USER,
                             password=GATEWAY_PASSWORD, ca=world.broker.ca).start()
    world.processes.append(gateway)
    wait_for(lambda: _watermark(ledger) >= head, 60, "T001's watermark moved by the gateway's ack")
