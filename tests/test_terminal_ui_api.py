"""The kiosk session and its HTTP API in-process, with an agent that never
reaches a network (every decision offline): the clerk PIN and its lock-out,
hostile or out-of-order requests refused with a reason code and nothing
changed, who may call the API (Host, Origin, the session and its CSRF token,
the sign-in belonging to one client), configuration errors naming the key,
and the CSV and PDF exports. The same checks against the real process and
real HTTP clients: tests/test_terminal_ui_security.py."""

from __future__ import annotations

import io
import json
import random
import re
import tomllib
from pathlib import Path

import pypdf
import pytest
from fastapi.testclient import TestClient

from firmware import ledger_pdf
from firmware.config import ConfigError, parse
from firmware.counter import Identity
from firmware.clerk_pins import pin_hash
from terminal_ui.config import Clerk, KioskSettings, _settings, load
from terminal_ui.kiosk import Kiosk
from terminal_ui.app import create_app
from protocols import reasons
from tests.support import quota_fixtures as fx
from tests.support.kiosk_district import IMIDACLOPRID, RESTRICTED, label_code, new_pin
from tests.test_offline_counter import KEY, sync

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pin():
    return new_pin()


@pytest.fixture
def kiosk(tmp_path, pin):
    text = (f'[terminal]\nid = "T9"\nkey = "{KEY.hex()}"\nshop = "shop-T9"\n\n'
            f'[ledger]\npath = "{tmp_path / "t9.ledger.db"}"\nreserve_mb = 0\n\n'
            '[broker]\nurl = "mqtt://127.0.0.1:1"\n\n[counter]\ndeadline_ms = 100\nclerk = "c1"\n')
    config = parse(tomllib.loads(text), tmp_path)
    settings = KioskSettings(shop_name="测试店", clerks=[Clerk("c1", "李梅", pin_hash("c1", pin))], voice=False,
                             player=(), voice_cache=tmp_path / "voice", lock_after=3, lock_seconds=60)
    k = Kiosk(config, settings)
    sync(k.agent.config_store)
    yield k
    k.agent.stop()


BASE = "http://127.0.0.1:8080"        # the kiosk's configured address (KioskSettings.http)


class PageClient(TestClient):
    """Requests as the kiosk's page makes them: its own Origin, a session from
    GET /api/session, its CSRF token on every change (renewed by a sign-in)."""

    def __init__(self, app, **kwargs):
        super().__init__(app, base_url=BASE, headers={"Origin": BASE}, **kwargs)
        self.csrf = super().request("GET", "/api/session").json()["csrf"]

    def request(self, method, url, **kwargs):
        if method.upper() not in ("GET", "HEAD"):
            kwargs["headers"] = {"X-CSRF-Token": self.csrf, **dict(kwargs.get("headers") or {})}
        res = super().request(method, url, **kwargs)
        if url == "/api/signin" and res.status_code == 200:
            self.csrf = res.json()["csrf"]
        return res


@pytest.fixture
def app(kiosk):
    return create_app(kiosk)


@pytest.fixture
def client(app):
    return PageClient(app)


def sign_in(client, pin):
    res = client.post("/api/signin", json={"pin": pin})
    assert res.status_code == 200, res.text


def test_wrong_pins_lock_the_sign_in(client, kiosk, pin):
    for _ in range(3):
        assert client.post("/api/signin", json={"pin": "0000"}).json()["code"] == "clerk_pin_wrong"
    locked = client.post("/api/signin", json={"pin": pin})
    assert locked.status_code == 429 and locked.json()["code"] == "clerk_locked"
    assert locked.headers["retry-after"] == "60" and locked.json()["retry_after"] == 60
    assert kiosk.snapshot()["clerk"] is None and kiosk.snapshot()["screen"] == "signin"


def test_nothing_happens_before_sign_in_and_identification(client, kiosk, pin):
    assert client.post("/api/scan", json={"text": "6990000000268"}).json()["code"] == "clerk_required"
    sign_in(client, pin)
    assert client.post("/api/scan", json={"text": "6990000000268"}).json()["code"] == "subject_required"
    assert client.post("/api/checkout").json()["code"] == "subject_required"
    assert client.post("/api/void", json={}).json()["code"] == "nothing_to_void"
    assert kiosk.agent.ledger.head == 0


def test_hostile_requests_get_clear_errors_and_change_nothing(client, kiosk, pin):
    sign_in(client, pin)
    kiosk.identified(Identity("S1", "card", "CARD-1"))
    assert client.post("/api/scan", json={"text": "6990000000260"}).json()["code"] == "barcode_check_digit"
    assert client.post("/api/scan", json={"text": "x" * 5000}).status_code == 422
    assert client.post("/api/cart", json={"product": "NOPE", "spec": "001"}).json()["code"] == "unknown_product"
    assert client.put("/api/cart/7", json={"packs": 2}).json()["code"] == "cart_line_missing"
    assert client.post("/api/cart", json={"product": fx.UREA[0], "spec": fx.UREA[1], "packs": 0}).status_code == 422
    assert client.post("/api/void", json={"reason": "'; DROP TABLE"}).status_code == 422
    assert kiosk.snapshot()["cart"] == [] and kiosk.agent.ledger.head == 0


def test_the_same_buyer_and_whose_cart_answers_refuse_what_does_not_apply(client, kiosk, pin):
    """继续为此人购买, 改为 N 件 and the answers about another card, asked when
    there is nothing to answer: a clear code each, and nothing changes."""
    sign_in(client, pin)
    kiosk.identified(Identity("S1", "card", "CARD-1"))
    assert client.post("/api/continue").json()["code"] == "subject_required"      # no decision on screen
    assert client.post("/api/allowed/0").json()["code"] == "cart_line_missing"
    assert client.post("/api/allowed/-1").json()["code"] == "cart_line_missing"
    assert client.post("/api/allowed/x").status_code == 422
    assert client.post("/api/buyer/keep-cart").json()["code"] == "no_pending_buyer"
    assert client.post("/api/buyer/current-first").json()["code"] == "no_pending_buyer"
    assert client.post("/api/scan", json={"text": "6990000000268"}).status_code == 200
    assert client.post("/api/checkout").json()["approved"]
    assert client.post("/api/allowed/0").json()["code"] == "no_allowed_quantity"   # it was sold
    assert client.post("/api/allowed/1").json()["code"] == "cart_line_missing"
    state = client.get("/api/state").json()
    assert state["screen"] == "result" and state["subject"]["id"] == "S1" and kiosk.agent.ledger.head == 1
    kiosk.identified(Identity("S2", "card", "CARD-2"))     # after a decision another card is the next buyer
    assert client.get("/api/state").json()["pending_buyer"] is None
    assert client.post("/api/scan", json={"text": "6990000000268"}).status_code == 200
    kiosk.identified(Identity("S1", "card", "CARD-1"))     # a card while S2's cart is open: asked, not swapped
    state = client.get("/api/state").json()
    assert state["subject"]["id"] == "S2" and state["pending_buyer"]["id"] == "S1"
    assert client.post("/api/scan", json={"text": "6990000000268"}).json()["code"] == "buyer_choice_pending"
    assert len(client.get("/api/state").json()["cart"]) == 1 and kiosk.agent.ledger.head == 1


def test_offline_sale_through_the_api_is_committed_then_shown(client, kiosk, pin):
    sign_in(client, pin)
    kiosk.identified(Identity("S1", "card", "CARD-1"))
    assert client.post("/api/scan", json={"text": "6990000000268"}).status_code == 200
    out = client.post("/api/checkout").json()
    assert out["approved"] and out["mode"] == "offline" and out["record_id"] == "T9-000001"
    assert kiosk.agent.ledger.head == 1                     # committed before the answer
    state = client.get("/api/state").json()
    assert state["screen"] == "result" and state["status"]["backlog"] == 1
    voided = client.post("/api/void", json={}).json()
    assert voided["voided"] and kiosk.agent.ledger.head == 2
    rows = client.get("/api/ledger").json()["rows"]
    assert [r["type"] for r in rows] == ["void", "sale"] and rows[1]["mode"] == "offline"
    csv_text = client.get("/api/ledger.csv").content.decode("utf-8-sig")
    assert csv_text.splitlines()[0].startswith("单号,时间,类型,方式") and "尿素" in csv_text
    assert "T9-000001,20" in csv_text and ",销售,离线," in csv_text and "李梅" in csv_text


def test_subject_panel_shows_the_village_by_name_and_the_credit_grade(client, kiosk, pin):
    """The synced entry's village name and grade reach the panel; a subject the
    gateway sent no grade for is "not rated" (None), not guessed."""
    entries = fx.subjects({"S1": 10, "S2": 8})
    entries[0].update(village="330113001001", village_name="东湖村", grade="C")
    sync(kiosk.agent.config_store, subjects=entries)
    sign_in(client, pin)
    kiosk.identified(Identity("S1", "card", "CARD-1"))
    panel = client.get("/api/state").json()["subject"]
    assert (panel["village_name"], panel["village"], panel["grade"]) == ("东湖村", "330113001001", "C")
    assert panel["name"] != "测试S1" and not {"plots", "permits", "allowances"} & set(panel)   # only what the clerk needs
    client.post("/api/finish")
    kiosk.identified(Identity("S2", "card", "CARD-2"))
    panel = client.get("/api/state").json()["subject"]
    assert (panel["village_name"], panel["grade"], panel["town"]) == (None, None, fx.TOWN)


def test_a_face_check_after_face_required_keeps_the_refused_lines_for_the_card_holder(client, kiosk, pin):
    """Restricted products need card and face: after the refusal the clerk has
    the buyer look at the camera, and only the lines refused for the face come
    back to the cart (the urea already sold is not sold twice)."""
    sign_in(client, pin)
    kiosk.identified(Identity("S1", "card", "CARD-1"))
    client.post("/api/scan", json={"text": "6990000000268"})
    client.post("/api/cart", json={"product": RESTRICTED[0], "spec": RESTRICTED[1]})
    out = client.post("/api/checkout").json()
    refused = [item for item in out["items"] if item["decision"] == "refuse"]
    assert out["decision"] == "partial" and [item["product"] for item in refused] == [RESTRICTED[0]]
    assert "face_required" in [r["code"] for r in refused[0]["reasons"]]
    kiosk.identified(Identity("S1", "card+face", "CARD-1"))      # what POST /api/face gives with the card on the reader
    state = client.get("/api/state").json()
    assert state["screen"] == "sale" and state["subject"]["method"] == "card+face" and state["outcome"] is None
    assert [(line["product"], line["packs"]) for line in state["cart"]] == [(RESTRICTED[0], 1)]
    assert kiosk.agent.ledger.head == 1                          # nothing decided again yet
    client.post("/api/finish")
    kiosk.identified(Identity("S1", "card", "CARD-1"))
    assert client.get("/api/state").json()["cart"] == []         # a new customer starts empty


def test_face_check_without_a_camera_says_so_and_bad_requests_are_refused(client, kiosk, pin):
    assert client.post("/api/face", json={}).json()["code"] == "clerk_required"
    sign_in(client, pin)
    res = client.post("/api/face", json={"product_class": "restricted"})
    assert res.status_code == 409 and res.json()["code"] == "camera_unavailable"
    assert client.post("/api/face", json={"product_class": "banned"}).status_code == 422
    assert kiosk.snapshot()["screen"] == "idle" and kiosk.identity is None


def test_search_lists_banned_products_marked(client, kiosk, pin):
    sign_in(client, pin)
    found = client.get("/api/catalogue", params={"q": "百草枯"}).json()["products"]
    assert found and all(p["status"] == "banned" for p in found)


def test_kiosk_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="kiosk.printer_columns"):
        _settings({"printer_columns": 40}, tmp_path, None)
    with pytest.raises(ConfigError, match=r"kiosk.clerks\[0\]"):
        _settings({"clerks": [{"id": "c1"}]}, tmp_path, None)
    bad = tmp_path / "t.toml"
    bad.write_text(f'[terminal]\nid = "T9"\nkey = "{KEY.hex()}"\n[kiosk]\nvoice = "yes"\n')
    with pytest.raises(ConfigError, match=r"t.toml: kiosk.voice must be bool"):
        load(bad)


# ---------------------------------------------------------------- ledger PDF

def pdf_pages(data: bytes) -> list[str]:
    assert data.startswith(b"%PDF-")
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages]


def test_ledger_pdf_lists_every_record_for_an_inspector(client, kiosk, pin):
    """Sales online and offline, a void, a refusal and a packaging return: each
    record's number, type and mode is in the PDF's text, under the Chinese title
    with shop, terminal, export time and range; the subject is its id, never a name."""
    ledger = kiosk.agent.ledger
    ledger.append("sale", {"subject": "S2", "items": [{"product": fx.UREA[0], "spec": fx.UREA[1], "packs": 1,
                                                       "decision": "approve"}],
                           "identity": "card", "mode": "online", "clerk": "c1", "auth": "A-1"}, kiosk.wall_ms())
    sign_in(client, pin)
    kiosk.identified(Identity("S1", "card", "CARD-1"))
    client.post("/api/scan", json={"text": "6990000000268"})
    assert client.post("/api/checkout").json()["record_id"] == "T9-000002"            # offline sale
    assert client.post("/api/void", json={}).json()["voided"]                         # T9-000003
    client.post("/api/finish")
    kiosk.identified(Identity("S1", "card", "CARD-1"))
    label = label_code(*IMIDACLOPRID, random.Random(3))
    client.post("/api/scan", json={"text": label})
    assert client.post("/api/checkout").json()["record_id"] == "T9-000004"            # offline, with its code
    client.post("/api/finish")
    kiosk.identified(Identity("S1", "card", "CARD-1"))
    banned = client.get("/api/catalogue", params={"q": "百草枯"}).json()["products"][0]
    client.post("/api/cart", json={"product": banned["product"], "spec": banned["spec"]})
    refused = client.post("/api/checkout").json()
    assert refused["record_id"] == "T9-000005" and not refused["approved"]
    client.post("/api/finish")
    kiosk.identified(Identity("S1", "card", "CARD-1"))
    client.post("/api/return/start")
    client.post("/api/return/scan", json={"text": label})
    assert client.post("/api/return/commit").json()["seq"] == 6
    records = [json.loads(text) for text in ledger.rows()]
    assert [r["type"] for r in records] == ["sale", "sale", "void", "sale", "refusal", "return"]

    res = client.get("/api/ledger.pdf")
    assert res.status_code == 200 and res.headers["content-type"] == "application/pdf"
    assert re.fullmatch(r'attachment; filename="ledger-T9-\d{8}\.pdf"', res.headers["content-disposition"])
    pages = pdf_pages(res.content)
    text = "\n".join(pages)
    assert len(pages) == 1 and "第 1 页 / 共 1 页" in text
    assert "农资经营台账" in text and "测试店" in text and "shop-T9" in text and "T9" in text
    assert "单号 T9-000001 至 T9-000006，共 6 条" in text and "导出时间：" in text
    for seq in range(1, 7):
        assert f"T9-{seq:06d}" in text
    for word in ("销售", "作废", "拒售", "回收", "联网", "离线", "尿素", "吡虫啉"):
        assert word in text, word
    unit_code = records[5]["body"]["codes"][0]
    assert unit_code in text.replace("\n", "")
    assert re.search(r"T9-000003.*T9-000002", text.replace("\n", " "))                 # the void names its sale
    assert re.search(r"T9-000006.*T9-000004", text.replace("\n", " "))                 # the return its sale
    assert reasons.text(records[4]["body"]["reasons"][0]) in text.replace("\n", "")
    csv_text = client.get("/api/ledger.csv").content.decode("utf-8-sig")
    assert "测试S1" not in text and "测试S2" not in text and "测试S1" not in csv_text   # names never exported


@pytest.mark.timeout(180)
def test_ledger_pdf_of_thousands_of_records_numbers_its_pages(client, kiosk, pin):
    sign_in(client, pin)
    ledger = kiosk.agent.ledger
    ledger.db.conn.execute("PRAGMA synchronous=OFF")          # test setup only: 3000 fsyncs would be slow
    n = 3000
    for i in range(n):
        ledger.append("sale", {"subject": "S%d" % (1 + i % 2), "items": [{"product": fx.UREA[0], "spec": fx.UREA[1],
                                                                         "packs": 1 + i % 3, "decision": "approve"}],
                               "identity": "card", "mode": "offline" if i % 4 else "online", "clerk": "c1"},
                      kiosk.wall_ms() + i * 60_000)
    pages = pdf_pages(client.get("/api/ledger.pdf").content)
    total = len(pages)
    per_page = []
    for number, page in enumerate(pages, 1):
        assert f"第 {number} 页 / 共 {total} 页" in page
        per_page.append([int(s) for s in re.findall(r"^T9-(\d{6})\b", page, re.M)])
    assert [seq for seq in sum(per_page, [])] == list(range(1, n + 1))     # every record once, in order
    assert "单号 T9-000001 至 T9-003000，共 3000 条" in pages[0]
    # Rows of equal height: every page after the first but the last is full
    # alike, so the page count is exactly what the rows need.
    middle = {len(p) for p in per_page[1:-1]}
    assert len(middle) == 1 and 0 < len(per_page[-1]) <= middle.pop() and total > 20


def test_ledger_pdf_refusals_name_the_missing_font_package_or_the_export_running(client, kiosk, monkeypatch, pin):
    sign_in(client, pin)
    monkeypatch.setattr(ledger_pdf, "FONT_CANDIDATES", (Path("/nonexistent/wqy-microhei.ttc"),))
    res = client.get("/api/ledger.pdf")
    assert res.status_code == 409 and res.json()["code"] == "ledger_pdf_font_missing"
    assert "fonts-wqy-microhei" in res.json()["zh"] and "fonts-wqy-microhei" in res.json()["en"]
    monkeypatch.undo()
    with kiosk.exports._pdf_lock:
        assert client.get("/api/ledger.pdf").json()["code"] == "ledger_pdf_busy"
    assert client.get("/api/ledger.pdf").status_code == 200


# ---------------------------------------------------------------- who may call the API (issue 15, item 15)

def a_cart_on_the_counter(client, kiosk, pin):
    """The clerk's page signed in, a buyer identified, a bag of urea in the cart."""
    sign_in(client, pin)
    kiosk.identified(Identity("S1", "card", "CARD-1"))
    assert client.post("/api/scan", json={"text": "6990000000268"}).status_code == 200
    assert client.get("/api/state").json()["screen"] == "sale"


def nothing_changed(kiosk):
    state = kiosk.snapshot()
    assert kiosk.agent.ledger.head == 0 and state["screen"] == "sale" and len(state["cart"]) == 1


def test_a_foreign_host_is_refused_before_anything_runs(app, client, kiosk, pin):
    """A page that reaches the kiosk under a name of its own (DNS rebinding)
    sends that name as Host: 421 before any handler, whatever else it sends."""
    a_cart_on_the_counter(client, kiosk, pin)
    for host in ("evil.example:8080", "127.0.0.1:8081", "localhost", "127.0.0.1.nip.io:8080", ""):
        res = client.post("/api/checkout", headers={"Host": host})
        assert res.status_code == 421 and res.json()["code"] == "host_not_allowed", host
        assert client.get("/api/state", headers={"Host": host}).status_code == 421
        assert client.get("/", headers={"Host": host}).status_code == 421
    nothing_changed(kiosk)
    assert client.post("/api/checkout", headers={"Host": "localhost:8080", "Origin": "http://localhost:8080"}
                       ).json()["approved"]                           # the kiosk's own names still work


def test_a_cross_origin_or_tokenless_post_cannot_sell_even_with_the_clerks_cookie(app, client, kiosk, pin):
    """What another page in the clerk's browser can make it send (the clerk's
    cookie goes along: another port of 127.0.0.1 is the same site): a
    text/plain or form POST, from another origin or none, never carries the
    CSRF token; each is refused and the cart stays as it was."""
    a_cart_on_the_counter(client, kiosk, pin)
    browser = TestClient(app, base_url=BASE, cookies=client.cookies)   # the clerk's cookie, not the page's token
    attempts = [
        ({"Origin": "http://evil.example", "Content-Type": "text/plain"}, 403, "origin_not_allowed"),
        ({"Origin": "http://127.0.0.1:9999", "Content-Type": "text/plain"}, 403, "origin_not_allowed"),
        ({"Origin": "null", "Content-Type": "application/x-www-form-urlencoded"}, 403, "origin_not_allowed"),
        ({"Content-Type": "text/plain"}, 403, "origin_required"),
        ({"Origin": BASE, "Content-Type": "text/plain"}, 403, "csrf_token_invalid"),
        ({"Origin": BASE, "Content-Type": "application/x-www-form-urlencoded"}, 403, "csrf_token_invalid"),
        ({"Origin": BASE, "X-CSRF-Token": "guess", "Content-Type": "application/json"}, 403, "csrf_token_invalid"),
        ({"Origin": BASE, "Sec-Fetch-Site": "same-site", "X-CSRF-Token": client.csrf}, 403, "cross_site_request"),
        ({"Origin": BASE, "X-CSRF-Token": client.csrf, "Content-Type": "text/plain"}, 415, "content_type_json"),
    ]
    for headers, status, code in attempts:
        res = browser.post("/api/checkout", content=b"x=1", headers=headers)
        assert (res.status_code, res.json()["code"]) == (status, code), headers
        nothing_changed(kiosk)
    for path in ("/api/ledger.csv", "/api/state", "/api/events"):      # an <img> or <script> of another page
        res = browser.get(path, headers={"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors"})
        assert (res.status_code, res.json()["code"]) == (403, "cross_site_request"), path
    big = client.post("/api/scan", content=b'{"text": "' + b"1" * 20000 + b'"}',
                      headers={"Content-Type": "application/json"})
    assert big.status_code == 413
    nothing_changed(kiosk)
    assert client.post("/api/checkout").json()["approved"]            # the page itself, with its token


def test_the_sign_in_belongs_to_the_client_it_was_made_on(app, client, kiosk, pin):
    """Another client on the machine (a page, a process) has a session of its
    own and is not signed in: it sees the sign-in screen, reads no ledger and
    does nothing, until it signs in itself; then the first client is out."""
    a_cart_on_the_counter(client, kiosk, pin)
    other = PageClient(app)
    public = other.get("/api/state").json()
    assert public["screen"] == "signin" and public["clerk"] is None
    assert not {"subject", "cart", "outcome", "returned", "receipt", "shop"} & set(public)
    for path in ("/api/ledger", "/api/ledger.csv", "/api/ledger.pdf", "/api/catalogue?q=尿素"):
        res = other.get(path)
        assert (res.status_code, res.json()["code"]) == (401, "clerk_required"), path
    for method, path, body in (("POST", "/api/checkout", None), ("POST", "/api/scan", {"text": "6990000000268"}),
                               ("PUT", "/api/cart/0", {"packs": 9}), ("DELETE", "/api/cart/0", None),
                               ("POST", "/api/finish", None), ("POST", "/api/signout", None),
                               ("POST", "/api/void", {}), ("POST", "/api/voice", {"on": False}),
                               ("POST", "/api/return/start", None), ("POST", "/api/face", {})):
        res = other.request(method, path, json=body)
        assert (res.status_code, res.json()["code"]) == (401, "clerk_required"), path
    nothing_changed(kiosk)
    anonymous = TestClient(app, base_url=BASE)                         # no session cookie at all
    for path in ("/api/ledger.csv", "/api/ledger.pdf", "/api/ledger", "/api/events"):
        res = anonymous.get(path)
        assert (res.status_code, res.json()["code"]) == (401, "session_required"), path
    assert anonymous.get("/api/state").json()["screen"] == "signin"
    assert client.get("/api/state").json()["subject"]["id"] == "S1"   # the clerk's page still holds the counter
    sign_in(other, pin)                                                # the other client signs in itself
    assert other.get("/api/ledger").status_code == 200
    assert client.get("/api/state").json()["screen"] == "signin"
    assert client.post("/api/checkout").json()["code"] == "clerk_required"


def test_a_sign_in_makes_a_new_session_so_a_planted_cookie_never_becomes_the_clerks(app, client, kiosk, pin):
    """Cookies ignore ports: a page on another port of 127.0.0.1 can plant a
    session cookie it knows in the clerk's browser. The sign-in answers with a
    new cookie (HttpOnly, SameSite=Strict) and token; the old ones are dead."""
    planted = client.cookies["kiosk_session"]
    planted_csrf = client.csrf
    res = client.post("/api/signin", json={"pin": pin})
    cookie = res.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Path=/" in cookie
    assert client.cookies["kiosk_session"] != planted and res.json()["csrf"] != planted_csrf
    attacker = TestClient(app, base_url=BASE, headers={"Origin": BASE, "X-CSRF-Token": planted_csrf},
                          cookies={"kiosk_session": planted})
    assert attacker.get("/api/ledger").json()["code"] == "session_required"
    assert attacker.post("/api/finish").json()["code"] == "session_required"
    assert client.get("/api/ledger").status_code == 200
    # a second kiosk_session cookie (planted beside the real one) is no session at all
    both = TestClient(app, base_url=BASE, headers={"Cookie": f"kiosk_session={planted}; kiosk_session="
                                                             f"{client.cookies['kiosk_session']}"})
    assert both.get("/api/ledger").json()["code"] == "session_required"


def test_every_answer_forbids_framing_and_foreign_scripts(client):
    for path in ("/", "/static/app.js", "/api/state", "/api/session"):
        headers = client.get(path).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert "default-src 'self'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    assert client.get("/api/state").headers["cache-control"] == "no-store"
    assert client.get("/openapi.json").status_code == 404


def test_the_kiosk_serves_on_loopback_only(tmp_path):
    with pytest.raises(ConfigError, match="kiosk.http must be a loopback"):
        _settings({"http": "0.0.0.0:8080"}, tmp_path, None)
    with pytest.raises(ConfigError, match="kiosk.http must be a loopback"):
        _settings({"http": "192.168.1.20:8080"}, tmp_path, None)
    assert _settings({"http": "[::1]:8080"}, tmp_path, None).http == "[::1]:8080"


def test_sessions_stay_bounded_and_the_end_of_the_clerks_session_signs_the_clerk_out(kiosk, pin):
    """A flood of new sessions ends the least recently used ones, never the
    one holding the counter; a session unused for the idle time ends, and its
    clerk's sign-in with it."""
    from terminal_ui.sessions import Sessions
    clock = [0.0]
    sessions = Sessions(holds=kiosk.holds, on_end=kiosk.end_session, idle_s=100, limit=4,
                        monotonic=lambda: clock[0])
    clerk_cookie, clerks = sessions.make()
    sessions.add(clerk_cookie, clerks)
    kiosk.sign_in(pin, session=clerks.id)
    flood = []
    for _ in range(10):
        clock[0] += 1
        flood.append(sessions.make())
        sessions.add(*flood[-1])
    assert len(sessions) == 4 and sessions.get(clerk_cookie) is clerks and kiosk.holds(clerks.id)
    assert [sessions.get(c) is not None for c, _ in flood] == [False] * 7 + [True] * 3
    clock[0] += 101
    assert sessions.get(clerk_cookie) is None                     # idle too long: ended
    assert not kiosk.holds(clerks.id) and kiosk.snapshot()["screen"] == "signin"
