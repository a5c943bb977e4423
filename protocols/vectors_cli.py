"""`python -m protocols vectors [--write]`: the shared envelope test vectors.

The vectors are the contract in executable form: CPython writes them from the
reference implementation, and the test suite checks them under CPython and
under a real MicroPython, so both interpreters produce the same bytes, digests
and MACs, and reject the same bad input with the same reason.
"""

import argparse
import json
import sys
from pathlib import Path

from protocols import canonical, envelope

PATH = Path(__file__).parent / "vectors" / "envelope.json"
KEY = bytes(range(32))

CANONICAL_VALUES = [
    {},
    [],
    {"b": 1, "a": 2, "c": {"z": None, "y": True, "x": False}},
    {"中文": "农药", "ascii": "x", "é": "ü"},
    ["line\nbreak", "tab\t", "quote\"", "back\\slash", "\x00\x01\x1f", "\x7f", "€😀"],
    {"n": [0, -1, 9007199254740991, -9007199254740991]},
    {"nested": [[[{"k": [1, [2, [3]]]}]]]},
    {"B": 1, "a": 2, "_": 3, "1": 4},
]

SALE_BODY = {
    "subject": "330110-S00042",
    "items": [{"product": "PD20080001", "packs": 2, "amount": 1000, "unit": "g", "code": "https://example.cn/q?c=1" + "0" * 31}],
    "identity": "card+face",
    "mode": "offline",
    "clerk": "clerk-01",
    "consumption": {"pesticide_g": 1000},
    "total_fen": 4560,
}

CARD_VECTORS = Path(__file__).parent / "vectors" / "card.json"


def _card_vector():
    """The test card of vectors/card.json (signed by its TEST key): a real
    payload and UID for the proof in the proof-carrying record."""
    data = json.loads(CARD_VECTORS.read_text(encoding="utf-8"))
    return data["card"], data["payload"].lower(), data["card"]["uid"].lower()


def _proof_sale_body():
    """An offline card sale carrying its identity proof (docs/protocol.md
    "Identity proof"): the variable-length hex of a card payload and UID."""
    card, payload, uid = _card_vector()
    return {
        "subject": card["subject_id"],
        "items": [{"product": "PD20080001", "packs": 1, "amount": 500, "unit": "g"}],
        "identity": "card",
        "mode": "offline",
        "clerk": "clerk-01",
        "card": card["card_no"],
        "consumption": {"pesticide_g": 500},
        "sale_id": "T-330110-0001-19ac9d3e9e8a0001",
        "proof": {"card": {"payload": payload, "uid": uid}},
    }


BAD_PAYLOADS = [
    ("not json", b"{", "malformed_json"),
    ("not utf8", b'{"v":1,"terminal":"\xff"}', "not_utf8"),
    ("float", b'{"v":1,"terminal":"T1","after":0.5,"records":[{}]}', "float_not_allowed"),
    ("nan", b'{"v":1,"terminal":"T1","after":NaN,"records":[{}]}', "malformed_json"),
    ("version", b'{"v":2,"terminal":"T1","after":0,"records":[{}]}', "unsupported_version"),
    ("missing records", b'{"v":1,"terminal":"T1","after":0}', "schema_invalid"),
    ("empty records", b'{"v":1,"terminal":"T1","after":0,"records":[]}', "schema_invalid"),
    ("extra field", b'{"v":1,"terminal":"T1","after":0,"records":[{}],"x":1}', "schema_invalid"),
    ("bad terminal id", b'{"v":1,"terminal":"T/1","after":0,"records":[{}]}', "schema_invalid"),
    ("negative after", b'{"v":1,"terminal":"T1","after":-1,"records":[{}]}', "schema_invalid"),
    ("bool after", b'{"v":1,"terminal":"T1","after":true,"records":[{}]}', "schema_invalid"),
    ("array", b"[1,2,3]", "schema_invalid"),
]


def _records():
    out, prev = [], envelope.GENESIS
    bodies = [
        ("sale", SALE_BODY),
        ("refusal", {"items": [{"product": "PD20080001", "packs": 1, "reasons": ["product_banned"]}],
                     "reasons": ["product_banned"], "clerk": "clerk-01", "subject": "330110-S00042"}),
        ("void", {"voids": 1, "reason": "customer_changed_mind", "clerk": "clerk-01"}),
        ("heartbeat", {"uptime_s": 3600, "backlog": 2}),
        ("sale", _proof_sale_body()),
    ]
    for i, (rtype, body) in enumerate(bodies):
        record = envelope.make_record(KEY, "T-330110-0001", i + 1, prev, 1764300000000 + i * 1000, rtype, body)
        prev = envelope.digest(record)
        out.append({"record": record, "canonical": envelope.stored_text(record),
                    "signing": envelope.signing_bytes(record).decode(), "digest": prev})
    return out


def _bad_records(good):
    base = json.loads(json.dumps(good))
    cases = []

    def variant(name, change, reason):
        rec = json.loads(json.dumps(base))
        change(rec)
        cases.append({"name": name, "record": rec, "reason": reason})

    variant("body altered", lambda r: r["body"].update(total_fen=1), "bad_mac")
    variant("seq altered", lambda r: r.update(seq=9), "bad_mac")
    variant("mac flipped", lambda r: r.update(mac=("f" if r["mac"][0] != "f" else "e") + r["mac"][1:]), "bad_mac")
    variant("unknown type", lambda r: r.update(type="gift"), "schema_invalid")
    variant("seq zero", lambda r: r.update(seq=0), "schema_invalid")
    variant("packs zero", lambda r: r["body"]["items"][0].update(packs=0), "schema_invalid")
    variant("missing clerk", lambda r: r["body"].pop("clerk"), "schema_invalid")
    variant("unknown body field", lambda r: r["body"].update(extra="x"), "schema_invalid")
    variant("uppercase hex prev", lambda r: r.update(prev="AB" * 32), "schema_invalid")
    variant("version 2", lambda r: r.update(v=2), "unsupported_version")
    return cases


def _bad_proofs(good):
    """The proof-carrying sale, its proof changed (MAC recomputed: a terminal
    holding its key could sign it): refused for its shape, or for its MAC."""
    cases = []

    def variant(name, proof, reason, resign=True):
        rec = json.loads(json.dumps(good))
        rec["body"]["proof"] = proof
        if resign:
            rec["mac"] = envelope.mac(KEY, envelope.signing_bytes(rec))
        cases.append({"name": name, "record": rec, "reason": reason})

    card = good["body"]["proof"]["card"]
    variant("proof payload uppercase", {"card": dict(card, payload=card["payload"].upper())}, "schema_invalid")
    variant("proof payload too long", {"card": dict(card, payload="ab" * 301)}, "schema_invalid")
    variant("proof uid too short", {"card": dict(card, uid="04a1b2")}, "schema_invalid")
    variant("proof unknown part", {"card": card, "pin": {"code": "1234"}}, "schema_invalid")
    variant("proof unknown override reason", {"override": {"reason": "override_friend"}}, "schema_invalid")
    variant("proof face distance too far", {"face": {"distance": 100001, "gallery": 3}}, "schema_invalid")
    variant("proof payload altered", {"card": dict(card, payload=card["payload"][:-2] + "00")}, "bad_mac",
            resign=False)
    return cases


def _bad_acks():
    """Acks a terminal must refuse (its watermark stays): no MAC, a MAC under
    another key, a field changed after signing, a record MAC's prefix."""
    good = json.loads(envelope.encode_ack(KEY, "T-330110-0001", 41, 42))
    unsigned = {k: v for k, v in good.items() if k != "mac"}

    def text(message):
        return canonical.dumps(message)

    other_key = dict(unsigned, mac=envelope.ack_mac(bytes(32), unsigned))
    moved = dict(good, upto=99)
    as_record = dict(unsigned, mac=envelope.mac(KEY, canonical.encode(unsigned)))
    return [("no mac", text(unsigned), "schema_invalid"),
            ("another key", text(other_key), "bad_mac"),
            ("upto raised after signing", text(moved), "bad_mac"),
            ("record prefix", text(as_record), "bad_mac")]


def build():
    records = _records()
    return {
        "comment": "Generated by `python -m protocols vectors --write`; see docs/protocol.md. "
                   "Checked under CPython and MicroPython by tests/test_protocol_vectors.py.",
        "key_hex": KEY.hex(),
        "canonical": [{"value": v, "text": canonical.dumps(v)} for v in CANONICAL_VALUES],
        "hmac": [{"key_hex": "0b" * 20, "data_hex": b"Hi There".hex(),
                  "mac_hex": envelope.hmac_sha256(b"\x0b" * 20, b"Hi There").hex()},
                 {"key_hex": (b"k" * 100).hex(), "data_hex": b"long key".hex(),
                  "mac_hex": envelope.hmac_sha256(b"k" * 100, b"long key").hex()}],
        "records": records,
        "bad_records": _bad_records(records[0]["record"]) + _bad_proofs(records[4]["record"]),
        "bad_payloads": [{"name": n, "payload_hex": p.hex(), "reason": r} for n, p, r in BAD_PAYLOADS],
        "ack": {"terminal": "T-330110-0001", "upto": 41, "seen": 42,
                "payload": envelope.encode_ack(KEY, "T-330110-0001", 41, 42).decode()},
        "bad_acks": [{"name": n, "payload": p, "reason": r} for n, p, r in _bad_acks()],
    }


def main(argv, prog):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the vector file")
    args = parser.parse_args(argv)
    text = json.dumps(build(), ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    if args.write:
        PATH.write_text(text, encoding="utf-8")
        print(f"wrote {PATH}")
        return 0
    if PATH.read_text(encoding="utf-8") != text:
        print(f"{PATH} is out of date: run `python -m protocols vectors --write`", file=sys.stderr)
        return 1
    print(f"{PATH} is up to date")
    return 0
