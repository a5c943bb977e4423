"""Spoken prompts: real espeak-ng output cached by text, played through a player
command, replaced by newer prompts, and silent when switched off."""

from __future__ import annotations

import shutil
import threading

import pytest

from firmware.voice import PROMPTS, CommandPlayer, EspeakSynth, RecordingPlayer, SynthError, Voice, spoken_reason
from simulator.processes import wait_for

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module", autouse=True)
def espeak():
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng missing: scripts/test.sh installs it (apt-get install espeak-ng)")


def test_prompt_is_synthesised_once_and_cached_as_wav(tmp_path):
    player = RecordingPlayer()
    voice = Voice(tmp_path / "cache", player=player)
    assert voice.say("tap") == "请刷卡或看摄像头"
    text, path = player.played[0]
    assert text == "请刷卡或看摄像头" and path.read_bytes()[:4] == b"RIFF" and path.stat().st_size > 10000
    voice.say("tap")
    assert voice.synthesised == 1 and player.played[1][1] == path
    # another voice speed is another sound: another cache entry
    slower = Voice(tmp_path / "cache", synth=EspeakSynth(speed=120), player=RecordingPlayer())
    assert slower.cache_path("请刷卡或看摄像头") != path


def test_refusal_says_why_in_few_words(tmp_path):
    player = RecordingPlayer()
    voice = Voice(tmp_path, player=player)
    said = voice.say("refused", "quota_exceeded")
    assert said == "不能购买。超出剩余定额"
    assert spoken_reason("restricted_no_permit") == "该主体没有此限制使用农药的使用许可"


def test_switched_off_plays_nothing(tmp_path):
    player = RecordingPlayer()
    voice = Voice(tmp_path, player=player, enabled=False)
    assert voice.say("approved") is None
    voice.set_enabled(True)
    voice.say("take_card")
    assert player.texts() == ["请取回您的卡"]


def test_command_player_runs_the_player_with_the_cached_file(tmp_path):
    log = tmp_path / "played.log"
    player = CommandPlayer(["sh", "-c", 'echo "$0" >> ' + str(log)])
    voice = Voice(tmp_path / "cache", player=player).start()
    try:
        voice.say("approved")
        wait_for(lambda: log.exists() and log.read_text().strip(), 10, "the player command run")
        played = log.read_text().split()
        assert played == [str(voice.cache_path(PROMPTS["approved"]))]
    finally:
        voice.stop()


def test_background_voice_keeps_only_the_newest_waiting_prompt(tmp_path):
    class HeldPlayer(RecordingPlayer):
        """Says when a prompt starts, and plays on only when the test lets it."""

        def __init__(self):
            super().__init__()
            self.playing = threading.Event()
            self.release = threading.Event()

        def play(self, path, text):
            self.playing.set()
            self.release.wait(5)
            super().play(path, text)

    player = HeldPlayer()
    voice = Voice(tmp_path, player=player)
    voice.prewarm()
    voice.start()
    try:
        voice.say("tap")
        assert player.playing.wait(5)  # "tap" is playing now
        voice.say("approved")         # waiting...
        voice.say("take_card")        # ...replaced by the newer prompt
        player.release.set()
        assert player.wait_for("请取回您的卡", 5)
        assert player.texts() == ["请刷卡或看摄像头", "请取回您的卡"]
    finally:
        player.release.set()
        voice.stop()


def test_missing_synthesiser_is_reported_not_raised_on_the_counter(tmp_path):
    voice = Voice(tmp_path, synth=EspeakSynth(binary=str(tmp_path / "no-espeak")), player=RecordingPlayer())
    with pytest.raises(SynthError):
        voice.audio("你好")
    voice.say("tap")                   # logged, nothing played, no exception
    assert voice.player.texts() == []


def test_a_face_hint_says_only_what_to_do_and_is_ready_before_the_first_check(tmp_path):
    """While the kiosk keeps trying on live frames (issue 17), the farmer hears
    what to do, not a refusal: 请靠近一点, 光线太暗, 请正对摄像头. They are
    synthesised at start-up with the fixed prompts."""
    player = RecordingPlayer()
    voice = Voice(tmp_path, player=player)
    voice.prewarm()
    made = voice.synthesised
    assert voice.say("face_hint", "face_too_small") == "请靠近一点"
    assert voice.say("face_hint", "face_too_dark") == "光线太暗"
    assert voice.say("face_hint", "face_no_face") == "请正对摄像头"
    assert voice.say("face_hint", "face_too_blurred") == "请保持不动"
    assert voice.synthesised == made   # all cached by prewarm
    assert player.texts() == ["请靠近一点", "光线太暗", "请正对摄像头", "请保持不动"]
