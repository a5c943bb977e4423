"""The MicroPython terminal's PN532 stack (firmware/mcu/reader.py over protocols/pn532host.py, shared with the Pi driver)
on the real MicroPython unix port, against the project's PN532 emulator on a
pty in its own process: both card types read and verified with the pure-Python
Ed25519 verifier, each emulator fault recovered from as the Pi driver does,
and rejected cards named by their reason."""

from __future__ import annotations

import pytest

from tests.support import mcu
from tests.support import quota_fixtures as fx

TODAY = "2026-06-01"


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    root = tmp_path_factory.mktemp("mcu-reader")
    proc = mcu.FieldProcess(root / "pn532", root / "field.log").start()
    proc.root = root
    yield proc
    proc.stop()


def tap(field, card, steps="", trusted=None, revoked=()):
    """Put `card` on the field, run `steps` (control commands) and read it
    under MicroPython; returns the CARD/REJECTED lines it printed."""
    code = f"""
import time
import board_unix, reader
from protocols import card, pn532host
from protocols.card import CardRejected
r = reader.Reader(board_unix.PtyUart({str(field.link)!r}))
fld = board_unix.Field({field.control!r})
trusted = card.trust_store([bytes.fromhex({trusted or fx.registry_public_hex()!r})])
fld.put({str(card)!r})
for line in {steps!r}.split(";"):
    if line:
        fld._call(line)
t = time.ticks_ms()
try:
    target = r.wait_for_target(3000)
    found, payload = pn532host.read_and_verify(r, target, trusted, {TODAY!r}, {list(revoked)!r})
    print("CARD", found.subject_id, target.kind, time.ticks_diff(time.ticks_ms(), t), r.link.retries)
except CardRejected as err:
    print("REJECTED", err.code)
fld.remove()
"""
    result = mcu.run(code)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("kind", ["ntag215", "classic1k"])
def test_card_is_read_and_its_signature_verified_under_micropython(field, kind):
    card, _ = mcu.card_file(field.root, "S-R-" + kind, kind)
    (line,) = tap(field, card).lines("CARD")
    subject, seen_kind, ms, retries = line.split()
    assert subject == "S-R-" + kind
    assert seen_kind == {"ntag215": "ntag", "classic1k": "classic1k"}[kind]
    print("tap to verified subject id, %s: %s ms (MicroPython unix port, PN532 frames over the pty)" % (kind, ms))
    assert int(ms) < 2000


@pytest.mark.parametrize("fault", ["noise", "mute", "no_ack", "bad_checksum", "error_frame", "slow_ack"])
def test_reader_recovers_from_each_line_fault(field, fault):
    card, _ = mcu.card_file(field.root, "S-F-" + fault)
    result = tap(field, card, steps=f"FAULT {fault} 1")
    (line,) = result.lines("CARD")
    subject, _, _, retries = line.split()
    assert subject == "S-F-" + fault
    if fault in ("mute", "error_frame", "slow_ack"):
        assert int(retries) >= 1   # the command was sent again: the fault was met, not missed


def test_reader_unplugged_and_plugged_back_is_used_again_without_restart(field):
    card, _ = mcu.card_file(field.root, "S-REPLUG")
    code = f"""
import board_unix, reader
from protocols import card, pn532host
r = reader.Reader(board_unix.PtyUart({str(field.link)!r}))
fld = board_unix.Field({field.control!r})
trusted = card.trust_store([bytes.fromhex({fx.registry_public_hex()!r})])
print("VERSION", r.firmware_version())
fld._call("UNPLUG")
try:
    r.list_target()
    print("STILL")
except pn532host.ReaderError as err:
    print("ERROR", err.code)
fld._call("REPLUG")
fld.put({str(card)!r})
target = r.wait_for_target(3000)
found, _ = pn532host.read_and_verify(r, target, trusted, {TODAY!r})
print("CARD", found.subject_id, r.port.opened)
"""
    result = mcu.run(code)
    assert result.returncode == 0, result.stderr
    assert result.lines("ERROR") == ["pn532_disconnected"]
    (line,) = result.lines("CARD")
    assert line.split()[0] == "S-REPLUG" and int(line.split()[1]) >= 2   # the line was opened again


def test_rejected_cards_carry_their_reason(field, tmp_path):
    from simulator.pn532_field import write_card_file
    payload, uid = fx.issue_card("S-BAD")
    tampered = bytearray(payload)
    tampered[20] ^= 0x01
    other_uid = bytes([4, 1, 2, 3, 4, 5, 6])
    cases = {
        "card_tampered": write_card_file(tmp_path / "t.json", bytes(tampered), uid),
        "card_copied": write_card_file(tmp_path / "c.json", payload, other_uid),
        "card_expired": mcu.card_file(tmp_path, "S-OLD", expires="2025-01-01")[0],
    }
    for code, path in cases.items():
        assert tap(field, path).lines("REJECTED") == [code], code
    assert tap(field, mcu.card_file(tmp_path, "S-REV", card_no="C-REV")[0],
               revoked=["C-REV"]).lines("REJECTED") == ["card_revoked"]
    stranger = "11" * 32   # a key the registry never used: the card is unknown here
    assert tap(field, mcu.card_file(tmp_path, "S-UNK")[0], trusted=stranger).lines("REJECTED") == ["card_unknown"]
