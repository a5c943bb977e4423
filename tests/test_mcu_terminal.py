"""The card-only MicroPython terminal end to end: `micropython firmware/mcu/main.py
--config FILE --sales -` as a real process on the MicroPython unix port, the
PN532 emulator on a pty in its own process, a real Mosquitto and the real
gateway. Sales are approved online and refused with the policy's reasons;
with the gateway or the broker killed they are decided offline within the
deadline; a SIGKILL of the terminal mid-upload and a torn ledger tail lose
nothing. After each, every record of the terminal's flash ledger is stored at
the gateway exactly once, unchanged, and every sale reported approved is
among them."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from simulator.processes import wait_for
from tests.support import quota_fixtures as fx
from tests.support.mcu_district import McuDistrict

UREA = fx.UREA[0]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def district(tmp_path):
    d = McuDistrict(tmp_path / "district").start()
    d.wait_config()
    yield d
    d.close()


def sell(d: McuDistrict, packs: int = 1, subject: str = "S-M-0001") -> str:
    return d.terminal.sell(d.cards[subject], [{"product": UREA, "packs": packs}])


def test_sales_are_approved_online_and_refused_with_the_policy_reason(district):
    d = district
    assert sell(d).startswith("APPROVED ")
    refused = sell(d, packs=100000)                 # far beyond a 1000 mu rice allowance
    assert refused == "REFUSED quota_exceeded"
    assert d.terminal.sell("04aabbccddeeff", [{"product": UREA, "packs": 1}]) == "REFUSED card_not_presented"
    d.wait_acked()
    d.assert_exactly_once()
    records = d.ledger_lines()
    assert [(r["type"], r["body"].get("mode")) for r in records] == [
        ("sale", "online"), ("refusal", "online"), ("refusal", None)]
    sale = records[0]["body"]
    assert sale["auth"] and sale["proof"]["card"]["uid"] == d.cards["S-M-0001"]
    # a line without a spec sells the product's first pack spec (50 kg urea is "002", 40 kg "001")
    assert sale["items"][0]["spec"] == "001" and sale["consumption"]["fert_n"] == 40000 * 46 // 100
    # what the buyer heard and saw: the unix twins of the buzzer, LED and OLED
    assert "BUZZER on" in d.terminal.lines and "LED on" in d.terminal.lines
    assert any(line.startswith("OLED 拒绝 REFUSED") for line in d.terminal.lines)


def results_within(d: McuDistrict, count: int, packs: int = 1) -> list[tuple[str, float]]:
    out = []
    for _ in range(count):
        started = time.monotonic()
        out.append((sell(d, packs), time.monotonic() - started))
    return out


def test_gateway_killed_sales_are_decided_offline_in_time_and_uploaded_once(district):
    d = district
    assert sell(d).startswith("APPROVED ")
    d.gateway.kill()
    results = results_within(d, 3)
    assert all(line.startswith("APPROVED ") for line, _ in results), results
    # the authorization deadline (1.5 s) plus the tap and the buzzer, not a hang
    assert all(seconds < 4.0 for _, seconds in results), results
    modes = [r["body"]["mode"] for r in d.ledger_lines() if r["type"] == "sale"]
    assert modes == ["online", "offline", "offline", "offline"]
    d.gateway.start().wait_subscribed()
    d.wait_acked()
    d.assert_exactly_once()


def test_broker_killed_sales_go_on_offline_and_reach_the_gateway_once_it_is_back(district):
    d = district
    assert sell(d).startswith("APPROVED ")
    d.broker.kill()
    results = results_within(d, 3)
    assert all(line.startswith("APPROVED ") for line, _ in results), results
    d.broker.start()
    assert sell(d).startswith("APPROVED ")
    d.wait_acked(timeout=90)
    d.assert_exactly_once()
    assert [r["body"]["mode"] for r in d.ledger_lines()][:4] == ["online", "offline", "offline", "offline"]


def test_sigkill_mid_upload_then_restart_loses_nothing_and_duplicates_nothing(district):
    """Killed with its records in flight: sent to the broker (PUBACKed, queued
    for the gateway's persistent session) but never acknowledged by the
    gateway. The watermark stays; the gateway stores what the broker held, and
    the restarted terminal learns the retained ack, sends again what is still
    missing, and continues its sequence."""
    d = district
    d.gateway.kill()
    results_within(d, 12)                      # offline sales, uploaded in batches of 8 to the broker
    assert len(d.terminal.approved) == 12
    wait_for(lambda: "batch sent after=8 upto=12" in d.terminal.log.read_text(errors="replace"), 30,
             "the last batch on the broker (PUBACKed)")
    online = d.retained_status()
    assert online["state"] == "online" and {"catalogue", "params", "balances"} <= set(online["versions"])
    d.terminal.kill()
    assert d.ledger_state().get("acked", 0) == 0   # in flight, not acknowledged
    wait_for(lambda: (d.retained_status() or {}).get("state") == "offline", 30, "the last will")
    d.gateway.start().wait_subscribed()
    wait_for(lambda: len(d.stored()) == 12, 60, "the batches the broker held, stored without the terminal")
    d.terminal.start()
    assert sell(d) == "APPROVED 13"
    d.wait_acked()
    d.assert_exactly_once()
    assert d.terminal.approved == list(range(1, 14))


def test_torn_ledger_tail_is_marked_and_the_terminal_goes_on(district):
    d = district
    assert sell(d) == "APPROVED 1"
    assert sell(d) == "APPROVED 2"
    d.wait_acked()
    d.terminal.kill()
    log = d.ledger_dir / "ledger.log"
    last = log.read_bytes().split(b"\n")[-2]
    with open(log, "ab") as f:
        f.write(last[: len(last) // 2])       # a power cut half-way through writing record 3
    d.terminal.start()
    assert sell(d) == "APPROVED 4"             # seq 3 is the torn-tail event
    d.wait_acked()
    d.assert_exactly_once()
    records = d.ledger_lines()
    assert records[2]["type"] == "event" and records[2]["body"]["code"] == "ledger_torn_tail"
    assert len(d.ledger_state()["torn"]) == 1


def test_bad_sale_lines_get_a_clear_error_and_change_nothing(district):
    d = district
    for line in ("not json", '{"items": []}', '["card"]'):
        d.terminal.proc.stdin.write(line.encode() + b"\n")
        d.terminal.proc.stdin.flush()
    wait_for(lambda: sum(1 for l in d.terminal.lines if l.startswith("ERROR sale_line_invalid")) == 3, 30,
             "three ERROR lines")
    assert d.ledger_lines() == []                 # nothing recorded for what is not a sale
    refused = d.terminal.sell(d.cards["S-M-0001"], [{"product": "NO-SUCH-PRODUCT", "packs": 1}])
    assert refused == "REFUSED unknown_product"   # a sale of something unknown: refused, and on the ledger
    assert [r["type"] for r in d.ledger_lines()] == ["refusal"]


def test_a_bad_config_file_is_named_with_its_key(tmp_path):
    from tests.support import mcu
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"terminal": {"id": "M001", "key": "zz"}, "broker": {"url": "mqtt://127.0.0.1:1"},
                                  "ledger": {"dir": str(tmp_path / "x")}, "config": {"dir": str(tmp_path / "y")}}))
    deposit = tmp_path / "deposit.json"
    deposit.write_text(json.dumps({"terminal": {"id": "M001", "key": "ab" * 32}, "broker": {"url": "mqtt://127.0.0.1:1"},
                                   "ledger": {"dir": str(tmp_path / "x")}, "config": {"dir": str(tmp_path / "y")},
                                   "counter": {"deposit_fen": -50}}))
    for path, expected in ((config, "terminal.key"), (tmp_path / "missing.json", "cannot read"),
                           (deposit, "counter.deposit_fen")):
        proc = subprocess.run([mcu.micropython(), str(mcu.MCU / "main.py"), "--config", str(path)],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and expected in proc.stderr and str(path) in proc.stderr, proc.stderr
    assert not (tmp_path / "x").exists()          # nothing was made


@pytest.mark.parametrize("tls", ["password", "cert"])
def test_terminal_sells_over_mqtt_over_tls(tmp_path, tls):
    """On the broker configuration the project generates for deployment: TLS
    with the broker's certificate checked against the run's CA, and the
    password or a client certificate (CN = terminal id)."""
    d = McuDistrict(tmp_path / "district", tls=tls).start()
    try:
        d.wait_config()
        assert sell(d).startswith("APPROVED ")
        d.wait_acked()
        d.assert_exactly_once()
        assert d.ledger_lines()[0]["body"]["mode"] == "online"
    finally:
        d.close()


def test_products_scanned_from_the_label_code_are_sold_and_kept_on_the_ledger(district):
    """A sale line item may carry what the UART scanner read (the label QR's
    text) instead of a product: resolved with protocols.labelcode as the Pi
    counter does, and the unit code is kept in the ledger's item."""
    d = district
    product = "PD20080102"
    unit_code = "1" + product[-6:] + "1" + "002" + "123456789012345678901"
    qr = "https://trace.example.cn/q?c=" + unit_code
    result = d.terminal.sell(d.cards["S-M-0001"], [{"code": qr, "packs": 1}])
    assert result.startswith(("APPROVED", "REFUSED")) and "labelcode" not in result
    item = d.ledger_lines()[-1]["body"]["items"][0]
    assert (item["product"], item["spec"], item["code"]) == (product, "002", unit_code)
    assert d.terminal.sell(d.cards["S-M-0001"], [{"code": "no code here", "packs": 1}]) == "REFUSED labelcode_no_unit_code"
    d.wait_acked()
    d.assert_exactly_once()
