"""Card poller: present/removed events from the real driver on the emulator, no busy
loop, and a reader that comes back after being unplugged."""

import time

import pytest

from protocols import card as card_format
from hardware.pn532 import cards
from hardware.pn532.emulated_cards import Ntag21x
from hardware.pn532.emulator import PN532Emulator
from hardware.pn532.poller import PRESENT, READER_ERROR, READER_OK, REMOVED, CardPoller
from hardware.pn532.reader import PN532

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def emulator():
    emu = PN532Emulator().start()
    yield emu
    emu.stop()


@pytest.fixture
def reader(emulator):
    with PN532(emulator.path, timeout=0.5) as r:
        yield r


def next_event(poller, kinds, timeout=2.0):
    """The next event of one of `kinds`, skipping none: anything else fails the test."""
    event = poller.get(timeout)
    assert event is not None, "no event within %.1f s" % timeout
    assert event.kind in kinds, event
    return event


def test_card_put_on_and_taken_off_gives_present_then_removed(reader, emulator):
    with CardPoller(reader, interval=0.02) as poller:
        assert poller.get(0.2) is None
        tag = emulator.put(Ntag21x())
        event = next_event(poller, {PRESENT})
        assert event.uid == tag.uid and event.target.kind == "ntag"
        assert poller.get(0.2) is None  # still on the field: no new event
        emulator.remove()
        assert next_event(poller, {REMOVED}).uid == tag.uid


def test_swapping_cards_gives_removed_then_present(reader, emulator):
    with CardPoller(reader, interval=0.02) as poller:
        first = emulator.put(Ntag21x())
        assert next_event(poller, {PRESENT}).uid == first.uid
        second = emulator.put(Ntag21x())
        assert next_event(poller, {REMOVED}).uid == first.uid
        assert next_event(poller, {PRESENT}).uid == second.uid


def test_one_missed_activation_does_not_remove_the_card(reader, emulator):
    poller = CardPoller(reader, removal_misses=2)
    tag = emulator.put(Ntag21x())
    assert [e.kind for e in poller.poll_once()] == [PRESENT]
    emulator.remove()
    assert poller.poll_once() == []
    emulator.put(tag)
    assert poller.poll_once() == []
    emulator.remove()
    assert poller.poll_once() == []
    assert [(e.kind, e.uid) for e in poller.poll_once()] == [(REMOVED, tag.uid)]


def test_idle_poller_sleeps_between_polls_instead_of_spinning(reader, emulator):
    interval = 0.05
    with CardPoller(reader, interval=interval) as poller:
        started_cpu = time.process_time()
        started = time.monotonic()
        deadline = started + 0.6
        while time.monotonic() < deadline:
            assert poller.get(deadline - time.monotonic()) is None
        elapsed = time.monotonic() - started
        cpu = time.process_time() - started_cpu
    assert 3 <= poller.polls <= elapsed / interval + 2
    assert cpu < elapsed * 0.5  # the whole process, emulator included, is mostly idle


def test_on_present_reads_the_card_before_the_next_poll(reader, emulator):
    registry = bytes(range(32))
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = Ed25519PrivateKey.from_private_bytes(registry).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    trusted = card_format.trust_store([public])
    tag = Ntag21x()
    payload = card_format.issue(
        card_format.Card(tag.uid, "ZJ330113-7", "330113-7", "330113", "2025-01-01", "2030-01-01"), registry)
    for page, data in card_format.ntag_pages(payload).items():
        tag.memory[page * 4:page * 4 + 4] = data

    def verify(r, target):
        return cards.read_and_verify(r, target, trusted, "2026-01-01")

    blank = Ntag21x()
    with CardPoller(reader, interval=0.02, on_present=verify) as poller:
        emulator.put(tag)
        event = next_event(poller, {PRESENT})
        assert event.error is None and event.result.subject_id == "ZJ330113-7"
        emulator.put(blank)
        next_event(poller, {REMOVED})
        event = next_event(poller, {PRESENT})
        assert event.result is None and event.error.code == "card_unknown"


def test_unplugged_reader_reports_once_and_resumes_when_plugged_back(tmp_path):
    link = str(tmp_path / "ttyPN532")
    emulator = PN532Emulator(link=link).start()
    try:
        with PN532(link, timeout=0.3) as reader:
            with CardPoller(reader, interval=0.02, max_backoff=0.1) as poller:
                tag = emulator.put(Ntag21x())
                assert next_event(poller, {PRESENT}).uid == tag.uid
                emulator.unplug()
                event = next_event(poller, {READER_ERROR})
                assert event.error.code == "pn532_disconnected"
                assert next_event(poller, {REMOVED}).uid == tag.uid
                assert poller.get(0.3) is None  # no flood of errors while it is gone
                emulator.replug()
                assert next_event(poller, {READER_OK}).kind == READER_OK
                assert next_event(poller, {PRESENT}).uid == tag.uid
    finally:
        emulator.unplug()
