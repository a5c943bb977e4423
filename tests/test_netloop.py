"""Many paho clients on one epoll thread (simulator/netloop.py), against a
real Mosquitto that the test kills: messages both ways, reconnection with
back-off after the broker comes back, and a removed client that is let go
of (its socket closed by hand reads as a dead terminal: the will is sent),
and a client that says goodbye is not reconnected."""

import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulator.broker import Mosquitto
from simulator.netloop import NetLoop
from simulator.processes import wait_for

CLIENTS = 60


def client(name: str, url_port: int, got: dict, will: str | None = None) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, clean_session=True, protocol=mqtt.MQTTv311)
    c.reconnect_delay_set(0.1, 1.0)
    if will:
        c.will_set(will, b"gone", qos=1)

    def on_connect(cl, userdata, flags, reason_code, properties):
        cl.subscribe(f"t/{name}", 1)
        got.setdefault(("connects", name), 0)
        got[("connects", name)] += 1

    def on_message(cl, userdata, message):
        got.setdefault(message.topic, []).append(message.payload)

    c.on_connect = on_connect
    c.on_message = on_message
    c.connect_async("127.0.0.1", url_port, keepalive=5)
    return c


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker").start()
    try:
        yield b
    finally:
        b.kill()


def subscribed(got, names, times=1):
    return all(got.get(("connects", n), 0) >= times for n in names)


def test_sixty_clients_on_one_thread_talk_and_come_back_after_the_broker_restarts(broker):
    loop = NetLoop("test-net")
    got: dict = {}
    names = [f"c{i}" for i in range(CLIENTS)]
    clients = {n: client(n, broker.port, got) for n in names}
    before = threading.active_count()
    try:
        for c in clients.values():
            loop.add(c)
        wait_for(lambda: subscribed(got, names) and all(c.is_connected() for c in clients.values()), 20,
                 "every client connected and subscribed")
        assert threading.active_count() <= before + 4      # connector threads at most, no thread per client
        # each client sends to the next one, from this (another) thread
        for i, n in enumerate(names):
            clients[n].publish(f"t/{names[(i + 1) % CLIENTS]}", f"from {n}".encode(), qos=1)
        wait_for(lambda: all(got.get(f"t/{n}") for n in names), 20, "every message delivered")
        assert got["t/c1"] == [b"from c0"]

        broker.kill()
        wait_for(lambda: not any(c.is_connected() for c in clients.values()), 20, "everyone seeing the loss")
        broker.start()
        wait_for(lambda: subscribed(got, names, 2) and all(c.is_connected() for c in clients.values()), 30,
                 "every client back by itself")
        clients["c5"].publish("t/c6", b"again", qos=1)
        wait_for(lambda: got["t/c6"][-1:] == [b"again"], 10, "a message after the restart")
    finally:
        for c in clients.values():
            c.disconnect()
        loop.close()


def test_a_removed_client_is_let_go_of_and_its_will_goes_out(broker):
    loop = NetLoop("test-net-2")
    got: dict = {}
    watcher = client("watcher", broker.port, got)
    dying = client("dying", broker.port, got, will="t/watcher")
    try:
        loop.add(watcher)
        loop.add(dying)
        wait_for(lambda: subscribed(got, ["watcher", "dying"]), 20, "both connected")
        loop.remove(dying)          # the loop lets go of it; a power cut closes the socket
        dying.socket().close()
        wait_for(lambda: got.get("t/watcher") == [b"gone"], 10, "the will of the dead client")
        time.sleep(1.0)                          # ten times its reconnect delay
        assert got[("connects", "dying")] == 1   # nobody reconnects it
        watcher.disconnect()                     # a goodbye is not a lost connection
        wait_for(lambda: watcher.socket() is None, 10, "the DISCONNECT written")
        time.sleep(1.0)
        assert got[("connects", "watcher")] == 1 and not watcher.is_connected()
    finally:
        watcher.disconnect()
        loop.close()
