"""The kiosk session and its HTTP API in-process, with an agent that never
reaches a network (every decision offline): the clerk PIN and its lock-out,
hostile or out-of-order requests refused with a reason code and nothing
changed, configuration errors naming the key, and the CSV export."""

from __future__ import annotations

import tomllib

import pytest
from fastapi.testclient import TestClient

from firmware.config import ConfigError, parse
from firmware.counter import Identity
from firmware.kiosk import Kiosk, KioskSettings, _settings, load, pin_hash, Clerk
from terminal_ui.app import create_app
from tests.support import quota_fixtures as fx
from tests.test_offline_counter import KEY, sync

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def kiosk(tmp_path):
    text = (f'[terminal]\nid = "T9"\nkey = "{KEY.hex()}"\nshop = "shop-T9"\n\n'
            f'[ledger]\npath = "{tmp_path / "t9.ledger.db"}"\nreserve_mb = 0\n\n'
            '[broker]\nurl = "mqtt://127.0.0.1:1"\n\n[counter]\ndeadline_ms = 100\nclerk = "c1"\n')
    config = parse(tomllib.loads(text), tmp_path)
    settings = KioskSettings(shop_name="测试店", clerks=[Clerk("c1", "李梅", pin_hash("c1", "2468"))], voice=False,
                             player=(), voice_cache=tmp_path / "voice", lock_after=3, lock_seconds=60)
    k = Kiosk(config, settings)
    sync(k.agent.config_store)
    yield k
    k.agent.stop()


@pytest.fixture
def client(kiosk):
    return TestClient(create_app(kiosk))


def test_wrong_pins_lock_the_sign_in(client, kiosk):
    for _ in range(3):
        assert client.post("/api/signin", json={"pin": "0000"}).json()["code"] == "clerk_pin_wrong"
    locked = client.post("/api/signin", json={"pin": "2468"})
    assert locked.status_code == 409 and locked.json()["code"] == "clerk_locked"
    assert kiosk.snapshot()["clerk"] is None and kiosk.snapshot()["screen"] == "signin"


def test_nothing_happens_before_sign_in_and_identification(client, kiosk):
    assert client.post("/api/scan", json={"text": "6990000000268"}).json()["code"] == "clerk_required"
    client.post("/api/signin", json={"pin": "2468"})
    assert client.post("/api/scan", json={"text": "6990000000268"}).json()["code"] == "subject_required"
    assert client.post("/api/checkout").json()["code"] == "subject_required"
    assert client.post("/api/void", json={}).json()["code"] == "nothing_to_void"
    assert kiosk.agent.ledger.head == 0


def test_hostile_requests_get_clear_errors_and_change_nothing(client, kiosk):
    client.post("/api/signin", json={"pin": "2468"})
    kiosk.identified(Identity("S1", "card", "CARD-1"))
    assert client.post("/api/scan", json={"text": "6990000000260"}).json()["code"] == "barcode_check_digit"
    assert client.post("/api/scan", json={"text": "x" * 5000}).status_code == 422
    assert client.post("/api/cart", json={"product": "NOPE", "spec": "001"}).json()["code"] == "unknown_product"
    assert client.put("/api/cart/7", json={"packs": 2}).json()["code"] == "cart_line_missing"
    assert client.post("/api/cart", json={"product": fx.UREA[0], "spec": fx.UREA[1], "packs": 0}).status_code == 422
    assert client.post("/api/void", json={"reason": "'; DROP TABLE"}).status_code == 422
    assert kiosk.snapshot()["cart"] == [] and kiosk.agent.ledger.head == 0


def test_offline_sale_through_the_api_is_committed_then_shown(client, kiosk):
    client.post("/api/signin", json={"pin": "2468"})
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
    assert csv_text.splitlines()[0].startswith("seq,time,type") and "尿素" in csv_text


def test_search_lists_banned_products_marked(client, kiosk):
    client.post("/api/signin", json={"pin": "2468"})
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
