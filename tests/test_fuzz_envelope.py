"""Hypothesis throws arbitrary bytes and near-valid messages at the decoder and
the gateway's verifier: nothing crashes, and every rejection has a known reason."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.ingest.verify import Batch, Rejected, check_batch
from protocols import canonical, envelope, reasons
from tests.records_factory import KEY, batch, chain

GOOD = chain("T1", 3)
GOOD_PAYLOAD = batch("T1", 0, GOOD)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)


def key_for(terminal):
    return KEY if terminal == "T1" else None


def assert_handled(result):
    if isinstance(result, Rejected):
        assert reasons.known(result.reason), result.reason
    else:
        assert isinstance(result, Batch)
        for entry in result.entries:
            if not entry.ok:
                assert reasons.known(entry.reason), entry.reason


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_crash_the_verifier(payload):
    result = check_batch("T1", payload, key_for)
    assert isinstance(result, Rejected)
    assert reasons.known(result.reason)


@settings(max_examples=300)
@given(json_values)
def test_arbitrary_json_never_crashes_the_verifier(value):
    try:
        payload = json.dumps(value).encode()
    except ValueError:
        return
    assert_handled(check_batch("T1", payload, key_for))


@settings(max_examples=300)
@given(st.integers(0, len(GOOD_PAYLOAD) - 1), st.integers(0, 255))
def test_any_single_byte_change_is_rejected_or_harmless(position, value):
    payload = bytearray(GOOD_PAYLOAD)
    payload[position] = value
    result = check_batch("T1", bytes(payload), key_for)
    assert_handled(result)
    if isinstance(result, Batch):
        stored = [e for e in result.entries if e.ok]
        originals = {envelope.stored_text(r) for r in GOOD}
        # anything that still verifies is byte-for-byte one of the signed records
        assert all(e.text in originals for e in stored)


record_mutations = st.fixed_dictionaries({}, optional={
    "seq": json_values, "prev": json_values, "time": json_values, "type": json_values,
    "terminal": json_values, "mac": json_values, "v": json_values, "extra": json_values,
})


def mutated_batch(changes, body_changes):
    """The good batch with record 2 changed; payload None if not JSON-encodable."""
    records = json.loads(json.dumps(GOOD))
    records[1].update(changes)
    if isinstance(records[1].get("body"), dict):
        records[1]["body"].update(body_changes)
    try:
        return records, json.dumps({"v": 1, "terminal": "T1", "after": 0, "records": records}).encode()
    except ValueError:
        return records, None


@settings(max_examples=300)
@given(record_mutations, st.dictionaries(st.text(max_size=8), json_values, max_size=3))
def test_mutated_records_in_a_valid_batch_are_rejected_one_by_one(changes, body_changes):
    records, payload = mutated_batch(changes, body_changes)
    if payload is None:
        return
    result = check_batch("T1", payload, key_for)
    assert_handled(result)
    if isinstance(result, Batch):
        assert result.entries[0].ok and result.entries[2].ok  # neighbours unaffected
        if changes or body_changes:
            changed = records[1] != json.loads(json.dumps(GOOD[1]))
            assert result.entries[1].ok is (not changed)


def test_oversized_message_is_rejected_without_parsing():
    payload = b'{"v":1,"records":[' + b" " * (envelope.MAX_BATCH_BYTES + 1) + b"]}"
    result = check_batch("T1", payload, key_for)
    assert isinstance(result, Rejected) and result.reason == "payload_too_large"


def test_deeply_nested_json_is_rejected_not_crashing():
    payload = b"[" * 100000 + b"]" * 100000
    result = check_batch("T1", payload[: envelope.MAX_BATCH_BYTES], key_for)
    assert isinstance(result, Rejected) and reasons.known(result.reason)


# ---- the fast path decides exactly as the general path

from gateway.ingest.fastpath import check_batch_fast  # noqa: E402


@settings(max_examples=300)
@given(st.integers(0, len(GOOD_PAYLOAD) - 1), st.integers(0, 255))
def test_fast_path_agrees_with_general_path_on_byte_changes(position, value):
    payload = bytearray(GOOD_PAYLOAD)
    payload[position] = value
    assert check_batch_fast("T1", bytes(payload), key_for) == check_batch("T1", bytes(payload), key_for)


@settings(max_examples=300)
@given(record_mutations, st.dictionaries(st.text(max_size=8), json_values, max_size=3))
def test_fast_path_agrees_with_general_path_on_mutated_records(changes, body_changes):
    records, payload = mutated_batch(changes, body_changes)
    if payload is None:
        return
    assert check_batch_fast("T1", payload, key_for) == check_batch("T1", payload, key_for)


@settings(max_examples=200)
@given(st.binary(max_size=1024))
def test_fast_path_agrees_on_arbitrary_bytes(payload):
    assert check_batch_fast("T1", payload, key_for) == check_batch("T1", payload, key_for)


def test_fast_path_takes_honest_batches_without_falling_back(monkeypatch):
    import gateway.ingest.fastpath as fp

    def no_fallback(*args):
        raise AssertionError("fell back to the general path")

    monkeypatch.setattr(fp, "check_batch", no_fallback)
    result = fp.check_batch_fast("T1", GOOD_PAYLOAD, key_for)
    assert [e.ok for e in result.entries] == [True, True, True]
    assert [e.text for e in result.entries] == [envelope.stored_text(r) for r in GOOD]
    assert [e.digest for e in result.entries] == [envelope.digest(r) for r in GOOD]


def _signed(rtype: str, body: dict) -> dict:
    """A record signed over whatever body it is given, valid or not."""
    record = {"v": 1, "terminal": "T1", "seq": 1, "prev": envelope.GENESIS, "time": 1764300000001,
              "type": rtype, "body": body}
    record["mac"] = envelope.mac(KEY, envelope.signing_bytes(record))
    return record


NESTED_TEXT_FIELDS = {
    "item product": lambda t: ("sale", {**GOOD[0]["body"], "items": [{"product": t, "packs": 1}]}),
    "item reason": lambda t: ("sale", {**GOOD[0]["body"], "items": [{"product": "P1", "packs": 1, "reasons": ["ok", t]}]}),
    "consumption key": lambda t: ("sale", {**GOOD[0]["body"], "consumption": {t: 5}}),
    "optional card": lambda t: ("sale", {**GOOD[0]["body"], "card": t}),
    "refusal reasons": lambda t: ("refusal", {"items": [], "reasons": [t], "clerk": "c1"}),
    "event digest": lambda t: ("event", {"code": "tamper", "digest": t}),
    "heartbeat versions key": lambda t: ("heartbeat", {"uptime_s": 1, "backlog": 0, "versions": {t: "v1"}}),
}


@settings(max_examples=400)
@given(st.sampled_from(sorted(NESTED_TEXT_FIELDS)),
       st.text(max_size=70) | st.text("abcdef0123456789ABC", min_size=64, max_size=64))
def test_fast_path_checks_character_sets_of_nested_fields_as_the_schema_does(field, text):
    rtype, body = NESTED_TEXT_FIELDS[field](text)
    payload = envelope.encode_batch("T1", 0, [envelope.stored_text(_signed(rtype, body))])
    fast, general = check_batch_fast("T1", payload, key_for), check_batch("T1", payload, key_for)
    assert isinstance(general, Batch)
    assert fast == general


def _signed_text(rtype: str, body_bytes: bytes) -> str:
    """A record whose body is exactly `body_bytes`, signed over those bytes
    with the terminal's real key, as a modified terminal could."""
    tail = ('"prev":"%s","seq":1,"terminal":"T1","time":1764300000001,"type":"%s","v":1}'
            % (envelope.GENESIS, rtype)).encode()
    signed = b'{"body":' + body_bytes + b"," + tail
    return (b'{"body":' + body_bytes + b',"mac":"' + envelope.mac(KEY, signed).encode() + b'",' + tail).decode()


@settings(max_examples=300)
@given(st.booleans(), st.booleans(), st.sampled_from([None, 1, 2]), st.text(max_size=12))
def test_fast_path_refuses_a_signed_body_that_is_not_canonical_as_the_general_path_does(
        sort_keys, ensure_ascii, indent, clerk):
    body = {**GOOD[0]["body"], "clerk": "c1", "items": [{"product": "P1", "packs": 2, "spec": clerk}]}
    body_bytes = json.dumps(body, sort_keys=sort_keys, ensure_ascii=ensure_ascii, indent=indent,
                            separators=(",", ":") if indent is None else None).encode()
    payload = envelope.encode_batch("T1", 0, [_signed_text("sale", body_bytes)])
    general = check_batch("T1", payload, key_for)
    assert check_batch_fast("T1", payload, key_for) == general
    assert general.entries[0].ok is (body_bytes == canonical.encode(body))


@settings(max_examples=200)
@given(st.binary(max_size=200), st.binary(max_size=1000))
def test_fast_path_record_mac_is_hmac_sha256_for_any_key_length(key, record_bytes):
    import hashlib
    import hmac

    from gateway.ingest.fastpath import _Hmac

    expected = hmac.new(key, envelope.RECORD_MAC_PREFIX + record_bytes, hashlib.sha256).hexdigest()
    assert _Hmac(key).hexdigest(record_bytes) == expected == envelope.mac(key, record_bytes)


@settings(max_examples=200)
@given(st.text(min_size=64, max_size=64) | st.text("0123456789abcdefABCDEFé", min_size=64, max_size=64))
def test_a_mac_of_any_64_characters_is_refused_not_crashing_the_fast_path(mac):
    """hmac.compare_digest raises on non-ASCII text; a crafted record must not
    take the verifier process (and every terminal's ingest) down with it."""
    record = dict(GOOD[0], mac=mac)
    payload = envelope.encode_batch("T1", 0, [canonical.encode(record).decode()])
    fast = check_batch_fast("T1", payload, key_for)
    assert fast == check_batch("T1", payload, key_for)
    assert fast.entries[0].ok is (mac == GOOD[0]["mac"])
