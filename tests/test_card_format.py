"""Subject card payload: codec, layouts, verification reasons, and the same vectors
under CPython and real MicroPython (where the pure-Python Ed25519 does the check)."""

import datetime
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import card as card_format
from protocols import reasons
from protocols.card import Card, CardRejected

VECTORS = json.loads((Path(card_format.__file__).parent / "vectors" / "card.json").read_text("utf-8"))
SEED = bytes.fromhex(VECTORS["seed"])
PUBLIC = bytes.fromhex(VECTORS["public_key"])
TRUSTED = card_format.trust_store([PUBLIC])
UID = bytes.fromhex("04A1B2C3D4E580")


def make_card(uid=UID, card_no="330113-2025-000123", issued="2025-03-01", expires="2030-02-28"):
    return Card(uid, "ZJ330113-00012345", card_no, "330113", issued, expires)


def reason(payload, uid=UID, today="2026-06-01", revoked=(), trusted=TRUSTED):
    try:
        card_format.verify(payload, uid, trusted, today, revoked)
    except CardRejected as exc:
        return exc.code
    return "ok"


def test_issued_card_verifies_and_round_trips_every_field():
    payload = card_format.issue(make_card(), SEED)
    card = card_format.verify(payload, UID, TRUSTED, "2026-06-01")
    assert card.to_dict() == VECTORS["card"]
    assert payload.hex().upper() == VECTORS["payload"]  # Ed25519 signatures are deterministic


def test_copied_payload_on_another_uid_is_rejected_as_copied():
    payload = card_format.issue(make_card(), SEED)
    assert reason(payload, uid=bytes.fromhex("04A1B2C3D4E581")) == "card_copied"


def test_every_single_bit_flip_is_rejected_and_most_as_tampered():
    payload = card_format.issue(make_card(), SEED)
    outcomes = {}
    for i in range(len(payload) * 8):
        flipped = bytearray(payload)
        flipped[i // 8] ^= 1 << (i % 8)
        outcomes.setdefault(reason(bytes(flipped)), []).append(i)
    assert "ok" not in outcomes
    # Only bits of the magic, version and key id change what the card claims to be.
    assert set(outcomes) <= {"card_tampered", "card_unknown"}
    assert all(i < 7 * 8 for i in outcomes.get("card_unknown", []))
    assert len(outcomes["card_tampered"]) > len(payload) * 8 - 7 * 8 - 1


def test_expired_card_is_rejected_as_expired_and_valid_on_its_last_day():
    payload = card_format.issue(make_card(expires="2026-05-31"), SEED)
    assert reason(payload, today="2026-05-31") == "ok"
    assert reason(payload, today="2026-06-01") == "card_expired"


def test_revoked_card_is_rejected_as_revoked():
    payload = card_format.issue(make_card(), SEED)
    assert reason(payload, revoked={"330113-2025-000123"}) == "card_revoked"
    assert reason(payload, revoked={"330113-2025-000124"}) == "ok"


def test_card_used_before_its_issue_date_is_not_yet_valid():
    assert reason(card_format.issue(make_card(), SEED), today="2025-02-28") == "card_not_yet_valid"


def test_card_signed_by_an_untrusted_key_is_unknown():
    other = Ed25519PrivateKey.generate()
    assert reason(card_format.issue(make_card(), other)) == "card_unknown"


def test_foreign_or_blank_data_is_unknown():
    assert reason(b"") == "card_unknown"
    assert reason(b"\x00" * 64) == "card_unknown"
    assert reason(b"AQ\x02" + b"\x00" * 80) == "card_unknown"  # a future format version


def test_every_rejection_has_a_registered_text_in_both_languages():
    for code in ("card_unknown", "card_tampered", "card_copied", "card_expired", "card_not_yet_valid",
                 "card_revoked", "card_reader_error"):
        assert reasons.known(code)
        assert reasons.text(code, "zh") != code and reasons.text(code, "en") != code


def test_ntag_layout_is_an_ndef_tlv_from_page_4():
    payload = card_format.issue(make_card(), SEED)
    pages = card_format.ntag_pages(payload)
    assert min(pages) == 4 and all(len(v) == 4 for v in pages.values())
    memory = b"".join(pages[p] for p in sorted(pages))
    assert memory.hex().upper() == VECTORS["ntag_user_memory"]
    assert memory[0] == 0x03 and memory[1] == len(card_format.ndef_message(payload))
    message = card_format.ndef_message(payload)
    assert message[0] == 0xD4 and message[3:3 + message[1]] == b"agriquota.cn:card"  # MB ME SR, TNF 4
    assert card_format.parse_user_memory(memory) == payload


def test_ndef_reader_skips_other_records_and_tlvs():
    payload = card_format.issue(make_card(), SEED)
    uri = bytes([0x91, 0x01, 0x0B, 0x55, 0x03]) + b"example.cn"  # MB, SR, TNF 1: a URI record
    ours = card_format.ndef_message(payload)
    message = uri + bytes([ours[0] & ~0x80]) + ours[1:]  # ours is now the last record, not the first
    memory = b"\x00\x01\x03\xa0\x0c\x44" + bytes([0x03, len(message)]) + message + b"\xfe"
    assert card_format.parse_user_memory(memory) == payload


def test_long_payloads_use_a_three_byte_tlv_length_and_long_ndef_record():
    image = card_format.tlv_image(b"AQ" + bytes(300))
    assert image[:2] == b"\x03\xff"
    start, length = card_format.tlv_extent(image)
    assert (start, length) == (4, (image[2] << 8) | image[3])
    assert card_format.parse_ndef(image[start:start + length]) == b"AQ" + bytes(300)


def test_classic_layout_skips_sector_trailers():
    payload = card_format.issue(make_card(uid=bytes.fromhex("A1B2C3D4")), SEED)
    blocks = card_format.classic_blocks(payload)
    assert sorted(blocks)[:4] == [4, 5, 6, 8]
    assert not any(b % 4 == 3 for b in blocks)
    memory = b"".join(blocks[b] for b in sorted(blocks))
    assert card_format.parse_user_memory(memory) == payload


def test_unformatted_memory_is_unknown():
    with pytest.raises(CardRejected) as err:
        card_format.parse_user_memory(b"\xfe" + b"\x00" * 15)
    assert err.value.code == "card_unknown"
    with pytest.raises(CardRejected) as err:
        card_format.parse_user_memory(b"\x00" * 16)
    assert err.value.code == "card_unknown"


@pytest.mark.parametrize("iso,days", VECTORS["dates"])
def test_dates_are_days_since_1970(iso, days):
    assert card_format.days_from_iso(iso) == days
    assert card_format.iso_from_days(days) == iso


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=0xFFFF))
def test_date_conversion_agrees_with_datetime(days):
    iso = (datetime.date(1970, 1, 1) + datetime.timedelta(days=days)).isoformat()
    assert card_format.iso_from_days(days) == iso
    assert card_format.days_from_iso(iso) == days


def test_bad_dates_and_fields_are_refused_at_issue():
    with pytest.raises(ValueError):
        card_format.issue(make_card(issued="2025-02-30"), SEED)
    with pytest.raises(ValueError):
        card_format.issue(make_card(issued="2026-01-01", expires="2025-01-01"), SEED)
    with pytest.raises(ValueError):
        card_format.issue(make_card(card_no="x" * 65), SEED)


def test_pure_python_ed25519_agrees_with_cryptography():
    key = Ed25519PrivateKey.from_private_bytes(os.urandom(32))
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    for message in (b"", b"a", os.urandom(200)):
        signature = key.sign(message)
        assert card_format.pure_ed25519_verify(public, message, signature)
        assert not card_format.pure_ed25519_verify(public, message + b"x", signature)
        bad = bytearray(signature)
        bad[5] ^= 1
        assert not card_format.pure_ed25519_verify(public, message, bytes(bad))
    assert not card_format.pure_ed25519_verify(public, b"a", b"\xff" * 64)  # S >= L


def test_rfc8032_test_vector_1_verifies_with_the_pure_verifier():
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    signature = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
    assert card_format.pure_ed25519_verify(public, b"", signature)


def test_pure_sha512_matches_hashlib():
    import hashlib

    for n in (0, 111, 112, 127, 128, 129, 1000):
        data = os.urandom(n)
        assert card_format.pure_sha512(data) == hashlib.sha512(data).digest()


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_vector_cases_give_the_listed_reason(case):
    got = reason(bytes.fromhex(case["payload"]), bytes.fromhex(case["uid"]), case["today"], set(case["revoked"]))
    assert got == case["expect"]


# Runs unchanged under MicroPython and CPython; VECTORS_PATH is set by the caller.
MICROPYTHON_CHECK = r"""
import json
import sys
from protocols import card as c
from protocols import pn532
v = json.load(open(VECTORS_PATH))
h = pn532.unhex
trusted = c.trust_store([h(v["public_key"])])
n = 0
for case in v["cases"]:
    try:
        c.verify(h(case["payload"]), h(case["uid"]), trusted, case["today"], case["revoked"])
        got = "ok"
    except c.CardRejected as e:
        got = e.code
    assert got == case["expect"], (case["name"], got)
    n += 1
card, body, sig = c.decode(h(v["payload"]))
assert card.to_dict() == v["card"], card.to_dict()
assert c.parse_user_memory(h(v["ntag_user_memory"])) == h(v["payload"])
assert c.ndef_message(h(v["payload"])) == h(v["ndef_message"])
for iso, days in v["dates"]:
    assert c.days_from_iso(iso) == days and c.iso_from_days(days) == iso
    n += 1
print(sys.implementation.name, "card vectors ok", n)
"""


def test_card_vectors_pass_under_micropython_with_the_pure_verifier(micropython):
    result = micropython('VECTORS_PATH = "/lib/protocols/vectors/card.json"\n' + MICROPYTHON_CHECK)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "micropython card vectors ok %d" % (len(VECTORS["cases"]) + len(VECTORS["dates"]))


def test_the_same_check_passes_under_cpython(capsys):
    path = Path(card_format.__file__).parent / "vectors" / "card.json"
    exec(compile(MICROPYTHON_CHECK, "card_check", "exec"), {"VECTORS_PATH": str(path)})
    assert capsys.readouterr().out.strip() == "cpython card vectors ok %d" % (len(VECTORS["cases"]) + len(VECTORS["dates"]))
