"""Checks protocols/vectors/envelope.json; runs unchanged under CPython and
MicroPython (so: no f-strings with `=`, no pathlib, no dataclasses)."""

import binascii
import json

from protocols import canonical, envelope


def _load(path):
    with open(path) as f:
        return json.loads(f.read())


def run_checks(path):
    vectors = _load(path)
    key = binascii.unhexlify(vectors["key_hex"])
    count = 0
    for case in vectors["canonical"]:
        got = canonical.dumps(case["value"])
        assert got == case["text"], "canonical %r != %r" % (got, case["text"])
        assert canonical.loads(got) == case["value"]
        count += 1
    for case in vectors["hmac"]:
        mac = envelope.hmac_sha256(binascii.unhexlify(case["key_hex"]), binascii.unhexlify(case["data_hex"]))
        assert binascii.hexlify(mac).decode() == case["mac_hex"], "hmac"
        count += 1
    prev = envelope.GENESIS
    for case in vectors["records"]:
        record = case["record"]
        assert record["prev"] == prev, "chain"
        assert envelope.signing_bytes(record).decode() == case["signing"], "signing bytes"
        assert envelope.stored_text(record) == case["canonical"], "stored text"
        digest, stored = envelope.verify_record(record, key)
        assert digest == case["digest"], "digest"
        assert stored == case["canonical"], "fast stored text"
        again = envelope.make_record(key, record["terminal"], record["seq"], record["prev"], record["time"],
                                     record["type"], record["body"])
        assert again["mac"] == record["mac"], "make_record reproduces the MAC"
        prev = digest
        count += 1
    for case in vectors["bad_records"]:
        try:
            envelope.verify_record(case["record"], key)
        except envelope.Invalid as err:
            assert err.code == case["reason"], "%s: got %s, want %s" % (case["name"], err.code, case["reason"])
        else:
            raise AssertionError("%s: accepted" % case["name"])
        count += 1
    for case in vectors["bad_payloads"]:
        try:
            envelope.decode_batch(binascii.unhexlify(case["payload_hex"]))
        except envelope.Invalid as err:
            assert err.code == case["reason"], "%s: got %s, want %s" % (case["name"], err.code, case["reason"])
        else:
            raise AssertionError("%s: accepted" % case["name"])
        count += 1
    ack = vectors["ack"]
    assert envelope.encode_ack(key, ack["terminal"], ack["upto"], ack["seen"]).decode() == ack["payload"]
    assert envelope.decode_ack(ack["payload"].encode(), key) == (ack["terminal"], ack["upto"], ack["seen"])
    count += 1
    for case in vectors["bad_acks"]:
        try:
            envelope.decode_ack(case["payload"].encode(), key)
        except envelope.Invalid as err:
            assert err.code == case["reason"], "%s: got %s, want %s" % (case["name"], err.code, case["reason"])
        else:
            raise AssertionError("ack %s: accepted" % case["name"])
        count += 1
    return count
