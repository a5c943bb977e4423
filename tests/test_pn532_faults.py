"""Injected faults: for each one the driver recovers with the right answer, or fails
with a clear error within its timeout. Never a hang: every test has a hard timeout.

Time is judged on the driver's own clock (`DriverClock`), not by a wall-time
window that a busy machine stretches: a timeout is the deadline the driver set
itself and kept (no read of the port once its clock showed the deadline), and a
fault that must fail fast shows by its error, because an exchange that ran into
its deadline raises `ReaderTimeout` instead."""

import time

import pytest

from protocols import card as card_format
from protocols.card import CardRejected
from hardware.pn532 import cards
from hardware.pn532.emulated_cards import Ntag21x
from hardware.pn532.emulator import PN532Emulator
from hardware.pn532.errors import CardError, ReaderDisconnected, ReaderError, ReaderTimeout
from hardware.pn532.reader import PN532

pytestmark = pytest.mark.timeout(20)

ACK = "0000FF00FF00"
NACK = "0000FFFF0000"
GET_FIRMWARE_VERSION = "0000FF02FED4022A00"
FIRMWARE_ANSWER = "0000FF06FAD50332010607E800"
WAKEUP = "5555" + "00" * 14
TIMEOUT = 0.5


def hx(data):
    return data.hex().upper()


@pytest.fixture
def emulator():
    emu = PN532Emulator().start()
    yield emu
    emu.stop()


class DriverClock:
    """The clock the driver reads, read through: it keeps every reading, and
    for every read of the port the driver's last reading before it."""

    def __init__(self):
        self.readings: list[float] = []
        self.reads: list[float] = []

    def __call__(self) -> float:
        now = time.monotonic()
        self.readings.append(now)
        return now

    def watch(self, port) -> None:
        read = port.read

        def watched():
            self.reads.append(self.readings[-1])
            return read()
        port.read = watched

    def run(self, fn, *args):
        """fn(*args) or the exception it raised, and the deadline the driver
        set for it: its first reading in the call plus its timeout (None when
        it failed before reading its clock)."""
        start, reads = len(self.readings), len(self.reads)
        try:
            result = fn(*args)
        except Exception as exc:  # noqa: BLE001 - handed back to the test to assert on
            result = exc
        self._call, self._reads = self.readings[start:], self.reads[reads:]
        self.deadline = self._call[0] + TIMEOUT if self._call else None
        return result

    def gave_up_at_the_deadline(self) -> bool:
        return self._call[-1] >= self.deadline

    def kept_the_deadline(self) -> bool:
        """No read of the port started once the driver's clock showed the deadline."""
        return all(t < self.deadline for t in self._reads)


@pytest.fixture
def clock():
    return DriverClock()


@pytest.fixture
def reader(emulator, clock):
    r = PN532(emulator.path, timeout=TIMEOUT, clock=clock)
    r.open()
    clock.watch(r.port)
    emulator.clear()
    yield r
    r.close()


def test_noise_before_the_ack_is_skipped(reader, emulator):
    emulator.inject("noise", data=bytes.fromhex("FF00FF13A5"))
    assert reader.firmware_version().ver == 1
    assert hx(emulator.host_bytes()) == GET_FIRMWARE_VERSION
    assert hx(emulator.pn532_bytes()) == "FF00FF13A5" + ACK + FIRMWARE_ANSWER


def test_spontaneous_line_noise_between_commands_is_ignored(reader, emulator):
    emulator.send(bytes.fromhex("00FF0A11223344"))
    assert emulator.wait_until(lambda: emulator.pn532_bytes())
    assert reader.firmware_version().ver == 1


def test_slow_ack_within_the_ack_timeout_is_waited_for(reader, emulator):
    emulator.inject("slow_ack", delay=0.05)
    assert reader.firmware_version().ver == 1
    assert hx(emulator.host_bytes()) == GET_FIRMWARE_VERSION


def test_ack_too_slow_cancels_and_resends_with_wakeup(reader, emulator):
    emulator.inject("slow_ack", delay=0.3)
    assert reader.firmware_version().ver == 1
    # command, no ACK in 100 ms -> ACK (cancel) -> wake-up + command again
    assert hx(emulator.host_bytes()) == GET_FIRMWARE_VERSION + ACK + WAKEUP + GET_FIRMWARE_VERSION
    assert hx(emulator.pn532_bytes()) == ACK + FIRMWARE_ANSWER  # the slow answer was cancelled


def test_missing_ack_with_an_answer_still_returns_the_answer(reader, emulator):
    emulator.inject("no_ack")
    assert reader.firmware_version().ver == 1
    assert hx(emulator.pn532_bytes()) == FIRMWARE_ANSWER


def test_command_lost_once_is_sent_again(reader, emulator):
    emulator.inject("mute")
    assert reader.firmware_version().ver == 1
    assert hx(emulator.host_bytes()) == GET_FIRMWARE_VERSION + ACK + WAKEUP + GET_FIRMWARE_VERSION


def test_mute_reader_fails_with_timeout_after_three_attempts(reader, emulator, clock):
    emulator.inject("mute", times=10)
    error = clock.run(reader.firmware_version)
    assert isinstance(error, ReaderTimeout) and error.code == "pn532_timeout"
    assert "no ACK" in str(error)
    assert clock.kept_the_deadline()
    assert emulator.host_bytes().count(bytes.fromhex(GET_FIRMWARE_VERSION)) == 3


def test_acked_command_without_answer_is_cancelled_at_the_deadline(reader, emulator, clock):
    emulator.inject("no_answer")
    error = clock.run(reader.firmware_version)
    assert isinstance(error, ReaderTimeout)
    assert clock.gave_up_at_the_deadline() and clock.kept_the_deadline()
    assert emulator.wait_until(lambda: hx(emulator.host_bytes()) == GET_FIRMWARE_VERSION + ACK)
    # The reader is usable again straight away (after a fresh initialisation).
    assert reader.firmware_version().ver == 1


def test_bad_checksum_is_answered_with_nack_and_the_resent_answer_used(reader, emulator):
    emulator.inject("bad_checksum")
    assert reader.firmware_version().astuple() == (0x32, 1, 6, 7)
    assert hx(emulator.host_bytes()) == GET_FIRMWARE_VERSION + NACK
    assert hx(emulator.pn532_bytes()) == ACK + "0000FF06FAD50332010607E900" + FIRMWARE_ANSWER


def test_answers_corrupted_every_time_fail_with_bad_frame(reader, emulator, clock):
    emulator.inject("bad_checksum", resends=True)
    error = clock.run(reader.firmware_version)
    assert type(error) is ReaderError and error.code == "pn532_bad_frame"
    # three NACKs, then the command is cancelled
    assert emulator.wait_until(lambda: hx(emulator.host_bytes()) == GET_FIRMWARE_VERSION + NACK * 3 + ACK)
    assert reader.firmware_version().ver == 1


def test_error_frame_once_is_retried(reader, emulator):
    emulator.inject("error_frame")
    assert reader.firmware_version().ver == 1
    assert hx(emulator.host_bytes()) == GET_FIRMWARE_VERSION * 2
    assert hx(emulator.pn532_bytes()) == ACK + "0000FF01FF7F8100" + ACK + FIRMWARE_ANSWER


def test_error_frames_every_time_fail_with_syntax_error(reader, emulator, clock):
    emulator.inject("error_frame", times=3)
    error = clock.run(reader.firmware_version)
    assert type(error) is ReaderError and error.code == "pn532_syntax_error"


def test_card_removed_mid_read_is_a_reader_error_for_the_clerk(reader, emulator, clock):
    key = bytes(range(32))
    uid = bytes.fromhex("04A1B2C3D4E580")
    card = emulator.put(Ntag21x(uid))
    payload = card_format.issue(card_format.Card(uid, "ZJ-1", "330113-1", "330113", "2025-01-01", "2030-01-01"), key)
    for page, data in card_format.ntag_pages(payload).items():
        card.memory[page * 4:page * 4 + 4] = data
    trusted = card_format.trust_store([_public(key)])
    target = reader.list_target()
    emulator.remove_card_after(2)
    error = clock.run(cards.read_and_verify, reader, target, trusted, "2026-01-01")
    assert isinstance(error, CardRejected) and error.code == "card_reader_error"
    assert "target timeout" in error.detail  # the PN532's status 0x01, not the driver's deadline
    assert reader.list_target() is None


def test_exchange_after_the_card_left_reports_status_target_timeout(reader, emulator):
    emulator.put(Ntag21x())
    target = reader.list_target()
    emulator.remove()
    with pytest.raises(CardError) as err:
        reader.ntag_read(target, 4)
    assert err.value.status == 0x01


def test_unplugged_reader_fails_fast_and_recovers_when_plugged_back(tmp_path):
    link = str(tmp_path / "ttyPN532")
    emulator = PN532Emulator(link=link).start()
    try:
        clock = DriverClock()
        reader = PN532(link, timeout=TIMEOUT, clock=clock)
        reader.open()
        assert reader.firmware_version().ver == 1
        emulator.unplug()
        error = clock.run(reader.firmware_version)
        assert isinstance(error, ReaderDisconnected) and error.code == "pn532_disconnected"
        error = clock.run(reader.firmware_version)  # still gone: the reopen fails cleanly
        assert isinstance(error, ReaderDisconnected) and "cannot open" in str(error)
        emulator.replug()
        assert reader.firmware_version().ver == 1
        # The new PN532 was asleep: the driver woke and configured it again.
        assert emulator.host_bytes().startswith(bytes.fromhex(WAKEUP))
        assert emulator.sam_configured
        reader.close()
    finally:
        emulator.unplug()


def _public(seed):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
