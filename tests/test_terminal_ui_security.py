"""The kiosk UI's session and origin checks and the PIN lock-out against the
real process (`python -m terminal_ui` on its shop: broker, gateway, emulated
reader), from outside, with plain HTTP clients and raw sockets, as another
process on the Pi or a page in its browser would try (issue 15, items 15 and
16). In the browser: tests/test_terminal_ui.py. In-process, each check alone:
tests/test_terminal_ui_api.py and tests/test_kiosk_pin.py.

Each test builds its own shop and signs in itself, so it passes alone and in
any order."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager

import httpx
import pytest

from simulator.processes import wait_for
from tests.support.kiosk_district import UREA_EAN, KioskClient, KioskShop, sale_records

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def shop(tmp_path):
    shop = KioskShop(tmp_path / "kiosk")
    try:
        shop.start_agent()
        shop.wait_synced()
        yield shop
    finally:
        shop.close()


def a_cart_on_the_counter(shop: KioskShop) -> None:
    """The clerk's client signed in, S-0001's card on the reader, urea in the cart."""
    shop.sign_in()
    shop.serve("S-0001")
    shop.api("POST", "/api/scan", {"text": UREA_EAN})
    assert len(shop.state()["cart"]) == 1


def no_sale(shop: KioskShop) -> None:
    assert not [r for r in sale_records(shop.ledger) if r["type"] in ("sale", "refusal")]
    state = shop.state()
    assert state["screen"] == "sale" and len(state["cart"]) == 1


def raw(shop: KioskShop, request: bytes) -> bytes:
    """One request as bytes on a socket: no client library fixing it up."""
    with socket.create_connection(("127.0.0.1", shop.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_a_text_plain_post_with_a_foreign_host_or_origin_sells_nothing(shop):
    """The attack of the issue: a cross-origin text/plain POST to /api/checkout
    with a foreign Host, which approved a sale. Now every variant is refused
    before any handler runs, the cart stays, and the clerk's own checkout
    still sells."""
    a_cart_on_the_counter(shop)
    url = shop.url + "/api/checkout"
    own = shop.url
    for headers, status, code in (
            ({"Host": "evil.example", "Origin": "http://evil.example"}, 421, "host_not_allowed"),
            ({"Host": f"evil.example:{shop.port}"}, 421, "host_not_allowed"),
            ({"Origin": "http://evil.example"}, 403, "origin_not_allowed"),
            ({"Origin": "http://127.0.0.1:1"}, 403, "origin_not_allowed"),
            ({}, 403, "origin_required"),
            ({"Origin": own}, 401, "session_required")):
        res = httpx.post(url, content=b"approve please", headers={"Content-Type": "text/plain", **headers})
        assert (res.status_code, res.json()["code"]) == (status, code), headers
    # with the clerk's own session cookie (as another page in the clerk's browser would send it) but no token
    cookies = shop.client.http.cookies
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        res = httpx.post(url, content=b"a=1", cookies=cookies, headers={"Content-Type": ctype, "Origin": own})
        assert (res.status_code, res.json()["code"]) == (403, "csrf_token_invalid"), ctype
    # raw bytes: HTTP/1.0 without Host, and two Host headers
    assert raw(shop, b"POST /api/checkout HTTP/1.0\r\nContent-Length: 0\r\n\r\n").startswith(b"HTTP/1.1 421")
    two = (f"POST /api/checkout HTTP/1.1\r\nHost: 127.0.0.1:{shop.port}\r\nHost: evil.example\r\n"
           f"Origin: {own}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").encode()
    assert raw(shop, two).startswith(b"HTTP/1.1 4")
    no_sale(shop)
    log = (shop.root / "terminal.log").read_text("utf-8")
    assert "kiosk request refused reason=host_not_allowed" in log and "reason=csrf_token_invalid" in log
    assert shop.api("POST", "/api/checkout")["approved"]


def test_ledger_state_and_events_are_for_the_signed_in_client_only(shop):
    """The ledger (CSV, PDF, rows) and the counter's state were readable by
    anyone on the machine. Now: without a session 401; with a session of its
    own but no sign-in, 401 for the ledger and only the public sign-in state."""
    assert shop.sell("S-0001", UREA_EAN)["approved"]
    shop.sign_in()
    shop.serve("S-0001")                                    # the clerk's client has a buyer on screen
    for path in ("/api/ledger.csv", "/api/ledger.pdf", "/api/ledger", "/api/events"):
        res = httpx.get(shop.url + path, timeout=10)
        assert (res.status_code, res.json()["code"]) == (401, "session_required"), path
    other = KioskClient(shop.url)
    try:
        for path in ("/api/ledger.csv", "/api/ledger.pdf", "/api/ledger", "/api/catalogue?q=x"):
            res = other.request("GET", path)
            assert (res.status_code, res.json()["code"]) == (401, "clerk_required"), path
        public = other.request("GET", "/api/state").json()
        assert public["screen"] == "signin" and public["clerk"] is None
        assert set(public) == {"boot", "version", "screen", "clerk", "message", "voice", "pin_rehash", "status"}
        assert set(public["status"]) == {"online", "catalogue", "params", "reader", "printer", "camera"}
        assert "S-0001" not in json.dumps(public)
        anonymous = httpx.get(shop.url + "/api/state", timeout=10).json()   # no session: the same public state
        assert anonymous["screen"] == "signin" and set(anonymous) == set(public)
    finally:
        other.close()
    csv_text = shop.client.request("GET", "/api/ledger.csv").content.decode("utf-8-sig")
    assert "S-0001" in csv_text                             # the clerk's client reads it


@contextmanager
def listening(url: str, cookies=None):
    """An event stream read on a thread: the states it got, newest last."""
    got: list[dict] = []
    status: list[int] = []
    stop = threading.Event()

    def read():
        try:
            with httpx.stream("GET", url + "/api/events", cookies=cookies, timeout=httpx.Timeout(5, read=None)) as res:
                status.append(res.status_code)
                if res.status_code != 200:
                    return
                for line in res.iter_lines():
                    if stop.is_set():
                        return
                    if line.startswith("data: "):
                        got.append(json.loads(line[6:]))
        except httpx.HTTPError:
            pass

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    wait_for(lambda: status, 10, "the stream's answer")
    try:
        yield got, status
    finally:
        stop.set()


def test_card_taps_reach_only_the_event_stream_of_the_signed_in_client(shop):
    """The reader's events are pushed over server-sent events: the stream
    needs a session, and only the session the clerk signed in on gets the
    subject; another client's stream stays on the public sign-in state."""
    shop.sign_in()
    other = KioskClient(shop.url)
    other.new_session()
    try:
        with listening(shop.url) as (_, anonymous):
            assert anonymous == [401]
        with listening(shop.url, shop.client.http.cookies) as (clerks, _), \
                listening(shop.url, other.http.cookies) as (others, status):
            assert status == [200]
            wait_for(lambda: clerks and others, 10, "a first state on both streams")
            shop.lift()
            shop.tap("S-0001")
            wait_for(lambda: any((s.get("subject") or {}).get("id") == "S-0001" for s in clerks), 15,
                     "the subject on the clerk's stream")
            time.sleep(1.0)                                 # what the other stream got meanwhile
            assert others and all(s["screen"] == "signin" and "subject" not in s for s in others)
            assert "S-0001" not in json.dumps(others)
    finally:
        other.close()


def test_wrong_pins_lock_sign_in_and_a_kill_9_restart_does_not_unlock_it(shop):
    """Five wrong PINs lock sign-in for 30 s, the right PIN included; the
    agent killed with SIGKILL and started again is still locked (the lock is a
    file written before the wrong PIN was answered)."""
    wrong = "%06d" % ((int(shop.pin) + 1) % 10 ** 6)
    for _ in range(5):
        assert shop.client.request("POST", "/api/signin", {"pin": wrong}).json()["code"] == "clerk_pin_wrong"
    locked = shop.client.request("POST", "/api/signin", {"pin": shop.pin})
    assert locked.status_code == 429 and locked.json()["code"] == "clerk_locked"
    assert 1 <= int(locked.headers["retry-after"]) <= 30
    shop.kill_agent()
    shop.start_agent()
    again = shop.client.request("POST", "/api/signin", {"pin": shop.pin})   # a new session: the old one died
    assert again.status_code == 429 and again.json()["code"] == "clerk_locked"
    assert 1 <= again.json()["retry_after"] <= 30
    state = shop.ledger.with_name(shop.ledger.stem + ".pin-lock.json")
    assert state.exists() and oct(state.stat().st_mode & 0o777) == "0o600"
