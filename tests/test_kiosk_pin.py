"""The clerk's PIN at the kiosk (issue 15, item 16): stored as scrypt with a
random salt in a self-describing string, the old fast `pin_sha256` entries
signing nobody in, and a lock-out that doubles after each five wrong PINs, up
to a cap, kept in a file so that a restart of the kiosk resets nothing. The
kiosk runs in-process with clocks the test moves; the same lock across a
real kill -9 is in tests/test_terminal_ui_security.py."""

from __future__ import annotations

import base64
import logging
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from terminal_ui.kiosk import clerk as kiosk_clerk
from firmware.config import ConfigError, parse
from firmware.clerk_pins import check_pin, pin_hash
from terminal_ui.config import Clerk, KioskSettings, _settings
from terminal_ui.errors import ClerkLocked, KioskError
from terminal_ui.kiosk import Kiosk
from tests.support.kiosk_district import new_pin
from tests.test_offline_counter import KEY

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """Wall and monotonic time the test moves by hand."""

    def __init__(self):
        self.wall = 1_780_000_000_000
        self.mono = 1000.0

    def wall_ms(self) -> int:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += int(seconds * 1000)
        self.mono += seconds


def agent_config(tmp_path):
    text = (f'[terminal]\nid = "T9"\nkey = "{KEY.hex()}"\nshop = "shop-T9"\n\n'
            f'[ledger]\npath = "{tmp_path / "t9.ledger.db"}"\nreserve_mb = 0\n\n'
            '[broker]\nurl = "mqtt://127.0.0.1:1"\n\n[counter]\ndeadline_ms = 100\nclerk = "c1"\n')
    return parse(tomllib.loads(text), tmp_path)


@pytest.fixture
def pin():
    return new_pin()


@pytest.fixture
def make_kiosk(tmp_path, pin):
    """A kiosk on tmp_path's ledger; called again, the same kiosk restarted."""
    made = []
    config = agent_config(tmp_path)
    clerk = Clerk("c1", "李梅", pin_hash("c1", pin))

    def make(clock: Clock) -> Kiosk:
        settings = KioskSettings(clerks=[clerk], voice=False, player=(), voice_cache=tmp_path / "voice")
        k = Kiosk(config, settings, wall_ms=clock.wall_ms, monotonic=clock.monotonic)
        made.append(k)
        return k

    yield make
    for k in made:
        k.agent.stop()


def wrong(pin: str) -> str:
    return "%06d" % ((int(pin) + 1) % 10 ** 6)


def test_pin_hash_is_scrypt_with_a_random_salt_and_names_its_parameters():
    first, second = pin_hash("c1", "246810"), pin_hash("c1", "246810")
    assert first != second                                   # a random salt each time
    kind, n, r, p, salt, digest = first.split("$")
    assert (kind, int(n), int(r), int(p)) == ("scrypt", 2 ** 15, 8, 1)
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(digest)) == 32
    assert check_pin("c1", "246810", first) and check_pin("c1", "246810", second)
    assert not check_pin("c1", "246811", first)
    assert not check_pin("c2", "246810", first)              # a line copied to another clerk signs nobody in
    # the parameters are read from the string: an entry made with others still checks
    assert check_pin("c1", "2468", pin_hash("c1", "2468", n=2 ** 14, r=8, p=2))


def test_config_takes_pin_hash_and_refuses_weak_or_malformed_ones(tmp_path):
    good = pin_hash("c1", "135790")
    settings = _settings({"clerks": [{"id": "c1", "name": "李梅", "pin_hash": good}]}, tmp_path, None)
    assert settings.clerks == [Clerk("c1", "李梅", good)] and not settings.clerks[0].legacy
    weak = pin_hash("c1", "135790", n=2 ** 10)
    for entry, match in (({"id": "c1", "pin_hash": weak}, r"kiosk.clerks\[0\].pin_hash N must be"),
                         ({"id": "c1", "pin_hash": "scrypt$32768$8$1$abc$def"}, r"kiosk.clerks\[0\].pin_hash"),
                         ({"id": "c1", "pin_hash": good.replace("scrypt", "bcrypt")}, r"kiosk.clerks\[0\].pin_hash"),
                         ({"id": "c1"}, r"kiosk.clerks\[0\] needs id and pin_hash")):
        with pytest.raises(ConfigError, match=match):
            _settings({"clerks": [entry]}, tmp_path, None)
    with pytest.raises(ConfigError, match="listed twice"):
        _settings({"clerks": [{"id": "c1", "pin_hash": good}, {"id": "c1", "pin_hash": good}]}, tmp_path, None)


def test_an_old_pin_sha256_entry_signs_nobody_in_and_the_owner_is_told(tmp_path, caplog):
    """The old hash (SHA-256 salted by the clerk id) is loaded so the agent
    still starts and uploads, and the log and the sign-in screen say what to
    do; the right PIN for it is refused like any other, so it tells a guesser
    nothing."""
    import hashlib
    old = hashlib.sha256(b"agri-kiosk-pin:c1:2468").hexdigest()
    caplog.set_level(logging.WARNING)
    settings = _settings({"clerks": [{"id": "c1", "pin_sha256": old},
                                     {"id": "c2", "pin_hash": pin_hash("c2", "975310")}]}, tmp_path, None)
    assert [c.legacy for c in settings.clerks] == [True, False]
    assert "kiosk-pin c1" in caplog.text
    config = agent_config(tmp_path)
    settings.voice, settings.player, settings.voice_cache = False, (), tmp_path / "voice"
    k = Kiosk(config, settings)
    try:
        assert k.pin_rehash == ["c1"]
        with pytest.raises(KioskError) as refused:
            k.sign_in("2468")
        assert refused.value.code == "clerk_pin_wrong" and k.clerk is None
        assert k.sign_in("975310").id == "c2"               # the re-hashed clerk signs in
    finally:
        k.agent.stop()


def test_five_wrong_pins_lock_and_each_next_lock_doubles_up_to_the_cap(make_kiosk, pin, monkeypatch):
    clock = Clock()
    k = make_kiosk(clock)
    checked = []
    real_check = kiosk_clerk.check_pin
    monkeypatch.setattr(kiosk_clerk, "check_pin", lambda *a: checked.append(a) or real_check(*a))
    expected = [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    for length in expected:
        for _ in range(4):
            with pytest.raises(KioskError, match="clerk_pin_wrong"):
                k.sign_in(wrong(pin))
        with pytest.raises(KioskError, match="clerk_pin_wrong"):
            k.sign_in(wrong(pin))                              # the fifth starts the lock
        checked.clear()
        with pytest.raises(ClerkLocked) as locked:
            k.sign_in(pin)                                     # the right PIN does not get through
        assert locked.value.retry_after == length and not checked   # and no PIN was even checked
        clock.advance(length - 1)
        with pytest.raises(ClerkLocked):
            k.sign_in(pin)
        clock.advance(1)
    assert k.sign_in(pin).id == "c1"
    # the right PIN clears the count, not the level: five more wrong ones lock for the cap again
    k.sign_out()
    for _ in range(5):
        with pytest.raises(KioskError, match="clerk_pin_wrong"):
            k.sign_in(wrong(pin))
    with pytest.raises(ClerkLocked) as locked:
        k.sign_in(pin)
    assert locked.value.retry_after == 3600


def test_the_lock_and_its_level_survive_a_restart_of_the_kiosk(make_kiosk, pin, tmp_path):
    clock = Clock()
    k = make_kiosk(clock)
    for _ in range(5):
        with pytest.raises(KioskError, match="clerk_pin_wrong"):
            k.sign_in(wrong(pin))
    clock.advance(10)
    k.agent.stop()
    restarted = make_kiosk(clock)                              # the same terminal, started again
    with pytest.raises(ClerkLocked) as locked:
        restarted.sign_in(pin)
    assert locked.value.retry_after == 20                      # the rest of the 30 s, not a fresh start
    state = tmp_path / "t9.ledger.pin-lock.json"
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600
    clock.advance(20)
    for _ in range(4):
        with pytest.raises(KioskError, match="clerk_pin_wrong"):
            restarted.sign_in(wrong(pin))
    restarted.agent.stop()
    again = make_kiosk(clock)                                  # four wrong PINs are remembered too
    with pytest.raises(KioskError, match="clerk_pin_wrong"):
        again.sign_in(wrong(pin))
    with pytest.raises(ClerkLocked) as locked:
        again.sign_in(pin)
    assert locked.value.retry_after == 60                      # the second lock, doubled


def test_a_restart_with_the_clock_set_early_never_lengthens_a_lock(make_kiosk, pin):
    """A Pi has no clock battery: booted, its clock can read hours early until
    NTP corrects it. The lock left is never more than its length."""
    clock = Clock()
    k = make_kiosk(clock)
    for _ in range(5):
        with pytest.raises(KioskError):
            k.sign_in(wrong(pin))
    k.agent.stop()
    clock.wall -= 5 * 3600 * 1000
    restarted = make_kiosk(clock)
    with pytest.raises(ClerkLocked) as locked:
        restarted.sign_in(pin)
    assert locked.value.retry_after == 30


def test_a_day_without_a_wrong_pin_starts_the_locks_again_from_30_seconds(make_kiosk, pin):
    clock = Clock()
    k = make_kiosk(clock)
    for length in (30, 60):
        for _ in range(5):
            with pytest.raises(KioskError):
                k.sign_in(wrong(pin))
        with pytest.raises(ClerkLocked) as locked:
            k.sign_in(pin)
        assert locked.value.retry_after == length
        clock.advance(length)
    clock.advance(86400 + 1)
    for _ in range(5):
        with pytest.raises(KioskError):
            k.sign_in(wrong(pin))
    with pytest.raises(ClerkLocked) as locked:
        k.sign_in(pin)
    assert locked.value.retry_after == 30


def test_kiosk_pin_prints_a_pin_hash_line_that_signs_the_clerk_in(tmp_path):
    pin = new_pin()
    env = dict(os.environ, PYTHONPATH=str(ROOT), CLERK_PIN=pin)
    out = subprocess.run([sys.executable, "-m", "firmware", "kiosk-pin", "c7", "--name", "王芳", "--pin-env",
                          "CLERK_PIN"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert pin not in out.stdout                               # the PIN itself is never printed
    entry = tomllib.loads(out.stdout)["kiosk"]["clerks"][0]
    assert entry["id"] == "c7" and entry["name"] == "王芳" and entry["pin_hash"].startswith("scrypt$32768$8$1$")
    clerk = _settings({"clerks": [entry]}, tmp_path, None).clerks[0]
    assert check_pin("c7", pin, clerk.pin_hash)
    short = subprocess.run([sys.executable, "-m", "firmware", "kiosk-pin", "c7"], input="1234\n", cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=60)
    assert short.returncode == 0 and "6 digits or more" in short.stderr
    bad = subprocess.run([sys.executable, "-m", "firmware", "kiosk-pin", "c7"], input="12a4\n", cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "4-12 digits" in bad.stderr
