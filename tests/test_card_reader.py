"""Subject cards end to end through the real driver and the emulator: issue, read,
verify; and the card a fraudster would bring, each refused with its own reason."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocols import card as card_format
from protocols.card import Card, CardRejected
from hardware.pn532 import cards
from hardware.pn532.emulated_cards import MifareClassic1K, Ntag21x
from hardware.pn532.emulator import PN532Emulator
from hardware.pn532.errors import CardError
from hardware.pn532.reader import PN532

pytestmark = pytest.mark.timeout(20)

REGISTRY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
TRUSTED = card_format.trust_store([REGISTRY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)])
TODAY = "2026-06-01"
OFFICE_KEY_A = bytes.fromhex("A0A1A2A3A4A5")
OFFICE_KEY_B = bytes.fromhex("B0B1B2B3B4B5")


@pytest.fixture
def emulator():
    emu = PN532Emulator().start()
    yield emu
    emu.stop()


@pytest.fixture
def reader(emulator):
    with PN532(emulator.path, timeout=0.5) as r:
        yield r


def issue_onto(reader, emulator, emulated, card_no="330113-2025-000123", expires="2030-02-28", keys=cards.DEFAULT_KEYS,
               key_b=False):
    emulator.put(emulated)
    target = reader.list_target()
    card = Card(target.uid, "ZJ330113-00012345", card_no, "330113", "2025-03-01", expires)
    payload = card_format.issue(card, REGISTRY)
    cards.write_payload(reader, target, payload, keys, key_b)
    return payload


def read(reader, revoked=(), today=TODAY, keys=cards.DEFAULT_KEYS):
    target = reader.list_target()
    return cards.read_and_verify(reader, target, TRUSTED, today, revoked, keys)


def rejection(reader, **kwargs):
    with pytest.raises(CardRejected) as err:
        read(reader, **kwargs)
    return err.value.code


@pytest.mark.parametrize("model", ["NTAG215", "NTAG216"])
def test_issue_read_and_verify_an_ntag(reader, emulator, model):
    tag = Ntag21x(model=model)
    issue_onto(reader, emulator, tag)
    card = read(reader)
    assert (card.uid, card.subject_id, card.card_no) == (tag.uid, "ZJ330113-00012345", "330113-2025-000123")
    assert tag.page(4)[0] == 0x03  # NDEF TLV at the start of user memory


def test_reading_an_ntag_takes_only_the_pages_the_payload_needs(reader, emulator):
    tag = Ntag21x()
    payload = issue_onto(reader, emulator, tag)
    emulator.clear()
    read(reader)
    reads = [f for f in emulator.commands if f.data[:1] == b"\x40"]
    needed = (len(card_format.tlv_image(payload)) + 4 + 15) // 16  # from page 3, 16 bytes per READ
    assert len(reads) == needed


def test_issue_read_and_verify_a_mifare_classic_1k(reader, emulator):
    tag = MifareClassic1K()
    issue_onto(reader, emulator, tag)
    card = read(reader)
    assert card.uid == tag.uid and len(card.uid) == 4
    assert tag.blocks[4][0] == 0x03


def test_classic_with_office_keys_is_read_with_the_right_key_after_a_wrong_one(reader, emulator):
    tag = MifareClassic1K()
    for sector in range(1, 16):
        tag.set_keys(sector, OFFICE_KEY_A, OFFICE_KEY_B)
    issue_onto(reader, emulator, tag, keys=(OFFICE_KEY_B,), key_b=True)
    # a terminal tries the transport key first, then the office read key
    card = read(reader, keys=(cards.TRANSPORT_KEY, OFFICE_KEY_A))
    assert card.uid == tag.uid
    assert rejection(reader, keys=(cards.TRANSPORT_KEY,)) == "card_reader_error"


def test_payload_copied_to_another_ntag_is_rejected_as_copied(reader, emulator):
    original = Ntag21x()
    issue_onto(reader, emulator, original)
    clone = Ntag21x()
    clone.memory[16:] = original.memory[16:]  # every user page copied, the UID cannot be
    emulator.put(clone)
    assert rejection(reader) == "card_copied"


def test_payload_copied_to_another_classic_is_rejected_as_copied(reader, emulator):
    original = MifareClassic1K()
    issue_onto(reader, emulator, original)
    clone = MifareClassic1K()
    for block in range(4, 64):
        clone.blocks[block][:] = original.blocks[block]
    emulator.put(clone)
    assert rejection(reader) == "card_copied"


def test_flipped_bit_on_the_card_is_rejected_as_tampered(reader, emulator):
    tag = Ntag21x()
    issue_onto(reader, emulator, tag)
    tag.memory[4 * 4 + 40] ^= 0x10  # a byte inside the subject id / card number
    assert rejection(reader) == "card_tampered"


def test_expired_card_is_rejected_as_expired(reader, emulator):
    issue_onto(reader, emulator, Ntag21x(), expires="2026-05-31")
    assert rejection(reader) == "card_expired"


def test_revoked_card_is_rejected_as_revoked(reader, emulator):
    issue_onto(reader, emulator, Ntag21x(), card_no="330113-2025-000999")
    assert rejection(reader, revoked={"330113-2025-000999"}) == "card_revoked"


def test_blank_ntag_is_unknown(reader, emulator):
    emulator.put(Ntag21x())
    assert rejection(reader) == "card_unknown"


def test_unformatted_ntag_without_capability_container_is_unknown(reader, emulator):
    tag = Ntag21x()
    tag.memory[12:16] = b"\x00" * 4
    emulator.put(tag)
    assert rejection(reader) == "card_unknown"
    with pytest.raises(CardRejected):
        cards.write_payload(reader, reader.list_target(), b"AQ" + bytes(100))


def test_blank_classic_is_unknown(reader, emulator):
    emulator.put(MifareClassic1K())
    assert rejection(reader) == "card_unknown"


def test_write_refuses_a_payload_too_big_for_the_card(reader, emulator):
    emulator.put(Ntag21x(model="NTAG213"))
    with pytest.raises(ValueError):
        cards.write_payload(reader, reader.list_target(), b"AQ" + bytes(200))


def test_card_taken_away_before_the_read_back_fails_the_issue(reader, emulator):
    tag = emulator.put(Ntag21x())
    target = reader.list_target()
    payload = card_format.issue(Card(tag.uid, "ZJ-1", "330113-1", "330113", "2025-03-01", "2030-01-01"), REGISTRY)
    emulator.remove_card_after(1 + len(card_format.ntag_pages(payload)))  # after the CC read and the writes
    with pytest.raises(CardError):
        cards.write_payload(reader, target, payload)
