"""Authorization messages: one shape in protocols/authz.py for both sides,
MACed with prefixes that keep them from ever passing as records (or as each
other), and the same bytes under MicroPython."""

from __future__ import annotations

import json

import pytest

from protocols import authz, envelope, policy
from tests.support import quota_fixtures as fx

KEY = bytes(range(32))
CART = [{"product": fx.UREA[0], "spec": fx.UREA[1], "packs": 2}]


def request(**kw) -> bytes:
    args = dict(key=KEY, terminal="T1", request_id="r1", sale_id="T1-1", time_ms=5, subject="S1",
                identity="card", cart=CART)
    args.update(kw)
    return authz.encode_request(args.pop("key"), args.pop("terminal"), args.pop("request_id"), args.pop("sale_id"),
                                args.pop("time_ms"), args.pop("subject"), args.pop("identity"), args.pop("cart"),
                                **args)


def test_request_round_trips_and_verifies_with_the_terminal_key():
    message = authz.verify_request(authz.decode_request(request(card="C1")), KEY)
    assert message["cart"] == CART and message["card"] == "C1" and message["sale_id"] == "T1-1"
    with pytest.raises(authz.Invalid) as err:
        authz.verify_request(authz.decode_request(request()), bytes(32))
    assert err.value.code == "bad_mac"


def test_altered_request_fails_and_bad_shapes_are_refused_with_a_reason():
    message = json.loads(request())
    message["cart"][0]["packs"] = 20
    with pytest.raises(authz.Invalid) as err:
        authz.verify_request(authz.decode_request(json.dumps(message).encode()), KEY)
    assert err.value.code == "bad_mac"
    for payload, code in ((b"{", "malformed_json"), (b'{"v":1,"x":1.5}', "float_not_allowed"),
                          (b'{"v":2}', "unsupported_version"), (b'{"v":1}', "schema_invalid"),
                          (b"x" * (authz.MAX_AUTH_BYTES + 1), "payload_too_large")):
        with pytest.raises(authz.Invalid) as err:
            authz.decode_request(payload)
        assert err.value.code == code
    with pytest.raises(authz.Invalid):
        request(cart=[])  # never sent: the terminal checks the shape before signing


def test_a_signed_request_is_not_a_valid_record_mac_and_not_a_response():
    message = json.loads(request())
    as_record = envelope.mac(KEY, envelope.signing_bytes({k: v for k, v in message.items()}))
    assert as_record != message["mac"]
    response = authz.encode_response(KEY, "T1", "r1", "T1-1", 7, authz.OK, auth="A1")
    decoded = authz.decode_response(response, KEY)
    assert decoded["auth"] == "A1"
    swapped = json.loads(response)
    swapped["mac"] = message["mac"]
    with pytest.raises(authz.Invalid):
        authz.decode_response(json.dumps(swapped).encode(), KEY)


def test_wire_decision_carries_the_policy_output_without_nulls():
    inputs = {"date": "2026-04-01", "mode": "online", "identity": "card",
              "subject": fx.subjects({"S1": 10})[0], "shop": {"id": "s", "designated": False},
              "cart": CART + [{"product": fx.UREA[0], "spec": fx.UREA[1], "packs": 9}], "balances": {},
              "catalogue": __import__("protocols.catalogue", fromlist=["load"]).load(), "params": fx.params()}
    result = policy.decide(inputs)
    wire = authz.wire_decision(result)
    assert wire["decision"] == "partial" and wire["consumption"] == result["consumption"]
    assert wire["items"][1]["max_packs"] == 4 and "action" not in wire["items"][0]
    payload = authz.encode_response(KEY, "T1", "r1", "T1-1", 7, authz.OK, auth="A1", decision=wire,
                                    used={"fert_n": {"2026": 46000}}, rev=3, acked=0,
                                    subject=fx.subjects({"S1": 10})[0])
    assert authz.decode_response(payload, KEY)["decision"] == wire


def test_local_date_is_china_standard_time():
    assert authz.local_date(0) == "1970-01-01"
    assert authz.local_date(16 * 3600 * 1000 - 1) == "1970-01-01"
    assert authz.local_date(16 * 3600 * 1000) == "1970-01-02"  # midnight in Beijing


def test_authorization_messages_match_under_micropython(micropython):
    expected = request(card="C1").decode()
    script = (
        "from protocols import authz\n"
        "key = bytes(range(32))\n"
        "cart = [{'product': %r, 'spec': %r, 'packs': 2}]\n"
        "p = authz.encode_request(key, 'T1', 'r1', 'T1-1', 5, 'S1', 'card', cart, card='C1')\n"
        "print(p.decode() == EXPECTED)\n"
        "m = authz.verify_request(authz.decode_request(p), key)\n"
        "r = authz.encode_response(key, 'T1', m['id'], m['sale_id'], 7, 'ok', auth='A1')\n"
        "print(authz.decode_response(r, key)['auth'], authz.local_date(16 * 3600 * 1000))\n"
    ) % fx.UREA
    result = micropython("EXPECTED = %r\n" % expected + script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "A1", "1970-01-02"]
