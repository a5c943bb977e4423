"""The real PN532 driver against the emulator over a pty: every command, byte for byte.

Frames are written out in full, as in the PN532 user manual (UM0701-02), so a
reader of this file can hold it next to the datasheet.
"""

import os
import pty
import select
import threading
import time
import tty

import pytest

from protocols import pn532
from hardware.pn532.emulated_cards import MifareClassic1K, Ntag21x
from hardware.pn532.emulator import PN532Emulator
from hardware.pn532.errors import CardError
from hardware.pn532.reader import PN532

pytestmark = pytest.mark.timeout(20)

ACK = "0000FF00FF00"
NTAG_UID = bytes.fromhex("04A1B2C3D4E580")
CLASSIC_UID = bytes.fromhex("A1B2C3D4")


def hx(data):
    return data.hex().upper()


@pytest.fixture
def emulator():
    emu = PN532Emulator().start()
    yield emu
    emu.stop()


@pytest.fixture
def reader(emulator):
    r = PN532(emulator.path, timeout=0.5)
    r.open()
    emulator.clear()
    yield r
    r.close()


def test_opening_wakes_the_pn532_and_configures_sam_and_passive_retries(emulator):
    with PN532(emulator.path) as r:
        assert r.port.is_open
    assert hx(emulator.host_bytes()) == (
        "5555" + "00" * 14                  # HSU wake-up
        + "0000FF05FBD4140114010200"        # SAMConfiguration normal mode, timeout 50 ms x 20, IRQ
        + "0000FF06FAD43205FF0101F400"      # RFConfiguration MaxRetries: ATR FF, PSL 01, passive 01
    )
    assert hx(emulator.pn532_bytes()) == (
        ACK + "0000FF02FED5151600"
        + ACK + "0000FF02FED533F800"
    )
    assert emulator.sam_configured and emulator.passive_retries == 1


def test_get_firmware_version_bytes_on_the_wire(reader, emulator):
    version = reader.firmware_version()
    assert version.astuple() == (0x32, 1, 6, 7)
    assert str(version) == "PN532 firmware 1.6"
    assert hx(emulator.host_bytes()) == "0000FF02FED4022A00"
    assert hx(emulator.pn532_bytes()) == ACK + "0000FF06FAD50332010607E800"


def test_sam_configuration_bytes_on_the_wire(reader, emulator):
    reader.sam_configuration()
    assert hx(emulator.host_bytes()) == "0000FF05FBD4140114010200"
    assert hx(emulator.pn532_bytes()) == ACK + "0000FF02FED5151600"


def test_rf_configuration_bounds_passive_activation_retries(reader, emulator):
    reader.set_max_retries(atr=0xFF, psl=0x01, passive=0x02)
    assert hx(emulator.host_bytes()) == "0000FF06FAD43205FF0102F300"
    assert hx(emulator.pn532_bytes()) == ACK + "0000FF02FED533F800"
    assert emulator.passive_retries == 2


def test_list_passive_target_without_card_returns_none(reader, emulator):
    started = time.monotonic()
    assert reader.list_target() is None
    assert time.monotonic() - started < 0.5
    assert hx(emulator.host_bytes()) == "0000FF04FCD44A0100E100"
    assert hx(emulator.pn532_bytes()) == ACK + "0000FF03FDD54B00E000"


def test_list_passive_target_finds_an_ntag215(reader, emulator):
    emulator.put(Ntag21x(NTAG_UID, "NTAG215"))
    target = reader.list_target()
    assert (target.tg, target.uid, target.kind) == (1, NTAG_UID, "ntag")
    # D5 4B NbTg=1 Tg=1 SENS_RES=00 44 SEL_RES=00 NFCIDLength=7 NFCID1
    answer = pn532.response(pn532.IN_LIST_PASSIVE_TARGET, bytes.fromhex("0101004400" + "07") + NTAG_UID)
    assert hx(answer) == "0000FF0FF1D54B01010044000704A1B2C3D4E5804000"
    assert hx(emulator.pn532_bytes()) == ACK + hx(answer)


def test_list_passive_target_finds_a_mifare_classic_1k(reader, emulator):
    emulator.put(MifareClassic1K(CLASSIC_UID))
    target = reader.list_target()
    assert (target.uid, target.kind, target.sens_res, target.sel_res) == (CLASSIC_UID, "classic1k", b"\x00\x04", 8)
    assert hx(emulator.pn532_bytes()) == ACK + "0000FF0CF4D54B010100040804A1B2C3D4E400"


def test_ntag_read_is_in_data_exchange_with_read_command(reader, emulator):
    card = emulator.put(Ntag21x(NTAG_UID))
    target = reader.list_target()
    emulator.clear()
    data = reader.ntag_read(target, 4)
    assert data == bytes(card.memory[16:32])
    # D4 40 Tg=01 READ=30 page=04
    assert hx(emulator.host_bytes()) == "0000FF05FBD440013004B700"
    assert hx(emulator.pn532_bytes()) == ACK + hx(pn532.response(pn532.IN_DATA_EXCHANGE, b"\x00" + data))


def test_ntag_read_returns_the_cards_pages_with_capability_container(reader, emulator):
    emulator.put(Ntag21x(NTAG_UID, "NTAG216"))
    target = reader.list_target()
    data = reader.ntag_read(target, 0)
    assert data[:3] == NTAG_UID[:3] and data[4:8] == NTAG_UID[3:]
    assert data[3] == 0x88 ^ NTAG_UID[0] ^ NTAG_UID[1] ^ NTAG_UID[2]  # BCC0
    assert data[12:16] == bytes.fromhex("E1106D00")  # NTAG216: 872 bytes of NDEF area


def test_ntag_write_is_in_data_exchange_with_write_command(reader, emulator):
    card = emulator.put(Ntag21x(NTAG_UID))
    target = reader.list_target()
    emulator.clear()
    reader.ntag_write(target, 4, bytes.fromhex("0312D411"))
    # D4 40 01 A2 04 03 12 D4 11
    assert hx(emulator.host_bytes()) == "0000FF09F7D44001A2040312D4114B00"
    assert hx(emulator.pn532_bytes()) == ACK + "0000FF03FDD54100EA00"
    assert card.page(4) == bytes.fromhex("0312D411")


def test_ntag_read_past_the_last_page_is_a_card_error(reader, emulator):
    emulator.put(Ntag21x(NTAG_UID, "NTAG215"))
    target = reader.list_target()
    with pytest.raises(CardError) as err:
        reader.ntag_read(target, 200)
    assert err.value.status == 0x01 and err.value.code == "pn532_card_error"


def test_mifare_classic_authenticate_read_and_write(reader, emulator):
    card = emulator.put(MifareClassic1K(CLASSIC_UID))
    target = reader.list_target()
    emulator.clear()
    reader.classic_auth(target, 4, b"\xff" * 6)
    # D4 40 01 60 (auth key A) 04 (block) FF x6 (key) A1 B2 C3 D4 (UID)
    assert hx(emulator.host_bytes()) == "0000FF0FF1D440016004FFFFFFFFFFFFA1B2C3D4A300"
    assert hx(emulator.pn532_bytes()) == ACK + "0000FF03FDD54100EA00"

    emulator.clear()
    block = bytes(range(16))
    reader.classic_write(target, 5, block)
    assert hx(emulator.host_bytes()) == hx(pn532.command(pn532.IN_DATA_EXCHANGE, b"\x01\xa0\x05" + block))
    assert bytes(card.blocks[5]) == block

    emulator.clear()
    assert reader.classic_read(target, 5) == block
    assert hx(emulator.host_bytes()) == "0000FF05FBD440013005B600"
    assert hx(emulator.pn532_bytes()) == ACK + hx(pn532.response(pn532.IN_DATA_EXCHANGE, b"\x00" + block))


def test_mifare_classic_wrong_key_is_an_authentication_error(reader, emulator):
    card = emulator.put(MifareClassic1K(CLASSIC_UID))
    card.set_keys(1, key_a=bytes.fromhex("A0A1A2A3A4A5"), key_b=bytes.fromhex("B0B1B2B3B4B5"))
    target = reader.list_target()
    emulator.clear()
    with pytest.raises(CardError) as err:
        reader.classic_auth(target, 4, b"\xff" * 6)
    assert (err.value.code, err.value.status) == ("pn532_auth_failed", 0x14)
    assert hx(emulator.pn532_bytes()) == ACK + "0000FF03FDD54114D600"
    target = reader.list_target()  # a failed authentication needs a fresh selection
    reader.classic_auth(target, 4, bytes.fromhex("A0A1A2A3A4A5"))
    assert len(reader.classic_read(target, 4)) == 16


def test_mifare_classic_access_bits_keep_key_a_from_writing(reader, emulator):
    card = emulator.put(MifareClassic1K(CLASSIC_UID))
    card.set_keys(1, key_a=bytes.fromhex("A0A1A2A3A4A5"), key_b=bytes.fromhex("B0B1B2B3B4B5"))
    target = reader.list_target()
    reader.classic_auth(target, 4, bytes.fromhex("A0A1A2A3A4A5"))
    with pytest.raises(CardError):
        reader.classic_write(target, 4, b"\x11" * 16)
    target = reader.list_target()
    reader.classic_auth(target, 4, bytes.fromhex("B0B1B2B3B4B5"), key_b=True)
    reader.classic_write(target, 4, b"\x11" * 16)
    assert bytes(card.blocks[4]) == b"\x11" * 16


def test_in_release_bytes_on_the_wire(reader, emulator):
    emulator.put(Ntag21x(NTAG_UID))
    target = reader.list_target()
    emulator.clear()
    reader.release(target)
    assert hx(emulator.host_bytes()) == "0000FF03FDD45201D900"
    assert hx(emulator.pn532_bytes()) == ACK + "0000FF03FDD55300D800"
    assert not emulator.target_active
    with pytest.raises(CardError) as err:
        reader.ntag_read(target, 4)
    assert err.value.status == 0x27  # not acceptable in this context: no target selected


def test_serial_url_with_baud_selects_the_same_port(emulator):
    with PN532("serial://%s?baud=115200" % emulator.path) as r:
        assert r.port.baud == 115200 and r.port.target == emulator.path
        assert r.firmware_version().ver == 1


class ScriptedPN532:
    """A PN532 played from a script of (expected bytes, reply) pairs on a raw pty,
    independent of the emulator: it proves the driver against the manual's bytes."""

    def __init__(self, script):
        self.master, slave = pty.openpty()
        tty.setraw(slave)
        self.slave = slave
        self.path = os.ttyname(slave)
        self.script = script
        self.received = b""
        self.error = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        deadline = time.monotonic() + 5
        pending = b""
        for expected, reply in self.script:
            while not pending.endswith(expected):
                if time.monotonic() > deadline:
                    self.error = "never received %s" % hx(expected)
                    return
                if select.select([self.master], [], [], 0.05)[0]:
                    data = os.read(self.master, 1024)
                    self.received += data
                    pending += data
            pending = b""
            os.write(self.master, reply)

    def close(self):
        self.thread.join(5)
        os.close(self.master)
        os.close(self.slave)


def test_driver_speaks_the_manuals_bytes_to_a_scripted_pn532():
    u = bytes.fromhex
    peer = ScriptedPN532([
        (u("0000FF05FBD4140114010200"), u("0000FF00FF00") + u("0000FF02FED5151600")),
        (u("0000FF06FAD43205FF0101F400"), u("0000FF00FF00") + u("0000FF02FED533F800")),
        (u("0000FF02FED4022A00"), u("0000FF00FF00") + u("0000FF06FAD50332010607E800")),
    ])
    try:
        with PN532(peer.path, timeout=1.0) as r:
            assert r.firmware_version().astuple() == (0x32, 1, 6, 7)
    finally:
        peer.close()
    assert peer.error is None, peer.error


def test_nack_from_the_pn532_makes_the_driver_send_the_command_again():
    u = bytes.fromhex
    get_firmware = u("0000FF02FED4022A00")
    peer = ScriptedPN532([
        (u("0000FF05FBD4140114010200"), u("0000FF00FF00") + u("0000FF02FED5151600")),
        (u("0000FF06FAD43205FF0101F400"), u("0000FF00FF00") + u("0000FF02FED533F800")),
        (get_firmware, u("0000FFFF0000")),  # NACK: "send that again"
        (get_firmware, u("0000FF00FF00") + u("0000FF06FAD50332010607E800")),
    ])
    try:
        with PN532(peer.path, timeout=1.0) as r:
            assert r.firmware_version().ver == 1
    finally:
        peer.close()
    assert peer.error is None, peer.error
    assert peer.received.endswith(get_firmware + get_firmware)
