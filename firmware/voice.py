"""Spoken prompts for the farmer: short Mandarin sentences through the speaker.

Many farmers at the counter are elderly and do not read the screen, so the
terminal says what to do ("请刷卡或看摄像头"), whether the purchase went through,
why not, and to take the card back. Speech is generated offline by espeak-ng
(no network, no cloud TTS: the counter works when the link is down) and cached
as WAV files named by a hash of voice, speed and text, so each sentence is
synthesised once per terminal and later prompts start at once.

Three small seams, each swappable: `Synth` (text -> WAV file), `Player` (plays a
file; `CommandPlayer` runs aplay, `RecordingPlayer` is the twin that remembers
what was "played"), and `Voice` (prompts, cache, on/off). Playing never blocks
the counter: prompts go to one worker thread, and a newer prompt replaces one
not yet started (the farmer needs the current state, not a queue of old ones).
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path

from firmware.face import errors as _face_errors  # registers the face reasons' texts
from protocols import policy as _policy, reasons  # policy registers its reason texts

log = logging.getLogger(__name__)

PROMPTS = {
    "tap": "请刷卡或看摄像头",
    "approved": "购买成功，请取货",
    "approved_offline": "网络中断，已离线登记，请取货",
    "refused": "不能购买。",
    "take_card": "请取回您的卡",
    "return_done": "包装回收已登记，谢谢",
    # another card while a cart is open: the clerk decides whose cart it is
    "buyer_changed": "换了一张卡，请店员确认为谁购买",
    # A face check's hint while the kiosk keeps trying (firmware.face.retry): only
    # what to do, from the reason's text ("请靠近一点", "光线太暗", "请正对摄像头").
    "face_hint": "",
}

# A refusal is spoken as "不能购买。" + the reason's text, cut at the first
# colon or full stop: the clerk's screen carries the rest (what to do next).
SPOKEN_REASON_CHARS = 24


def spoken_reason(code: str) -> str:
    text = reasons.text(code, "zh")
    for sep in ("：", "。", "；", ":"):
        text = text.split(sep)[0]
    return text[:SPOKEN_REASON_CHARS]


class SynthError(RuntimeError):
    pass


class EspeakSynth:
    """espeak-ng's Mandarin voice (`cmn`). Speed 150 words/min is a little slower
    than the default 175: clearer for older listeners in a noisy shop."""

    def __init__(self, voice: str = "cmn", speed: int = 150, binary: str | None = None, timeout: float = 10.0):
        self.voice = voice
        self.speed = speed
        self.binary = binary or shutil.which("espeak-ng") or "espeak-ng"
        self.timeout = timeout

    @property
    def key(self) -> str:
        return "espeak-ng:%s:%d" % (self.voice, self.speed)

    def synthesise(self, text: str, path: Path) -> None:
        try:
            proc = subprocess.run([self.binary, "-v", self.voice, "-s", str(self.speed), "-w", str(path), text],
                                  capture_output=True, timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SynthError("espeak-ng failed: %s" % exc) from None
        if proc.returncode != 0:
            raise SynthError("espeak-ng exit %d: %s" % (proc.returncode, proc.stderr.decode(errors="replace")[:200]))


class Player:
    def play(self, path: Path, text: str) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        pass


class CommandPlayer(Player):
    """Runs e.g. `aplay -q FILE` and waits for it (called on the voice thread)."""

    def __init__(self, command=("aplay", "-q"), timeout: float = 15.0):
        self.command = list(command)
        self.timeout = timeout
        self._proc: subprocess.Popen | None = None

    def play(self, path: Path, text: str) -> None:
        try:
            self._proc = subprocess.Popen(self.command + [str(path)], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE)
            _, err = self._proc.communicate(timeout=self.timeout)
            if self._proc.returncode:
                log.warning("player failed command=%s code=%d err=%s", self.command[0], self._proc.returncode,
                            err.decode(errors="replace")[:200])
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("player failed command=%s: %s", self.command[0], exc)
            self.stop()

    def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


class RecordingPlayer(Player):
    """The twin: remembers (text, file) of everything played, for tests and the
    simulator, and lets a test wait for a prompt with a deadline."""

    def __init__(self):
        self.played: list[tuple[str, Path]] = []
        self._cond = threading.Condition()

    def play(self, path: Path, text: str) -> None:
        with self._cond:
            self.played.append((text, Path(path)))
            self._cond.notify_all()

    def texts(self) -> list[str]:
        with self._cond:
            return [t for t, _ in self.played]

    def wait_for(self, text: str, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: any(text in t for t, _ in self.played), timeout)


class Voice:
    def __init__(self, cache_dir: str | Path, synth=None, player: Player | None = None, enabled: bool = True):
        self.cache_dir = Path(cache_dir)
        self.synth = synth or EspeakSynth()
        self.player = player or CommandPlayer()
        self.enabled = enabled
        self.synthesised = 0
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- cache

    def cache_path(self, text: str) -> Path:
        digest = hashlib.sha256((self.synth.key + "\0" + text).encode("utf-8")).hexdigest()[:24]
        return self.cache_dir / (digest + ".wav")

    def audio(self, text: str) -> Path:
        """The cached WAV for a text, synthesised first if needed (atomically:
        a half-written file is never taken for a finished one)."""
        path = self.cache_path(text)
        if path.exists():
            return path
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp%d" % threading.get_ident())
        self.synth.synthesise(text, tmp)
        os.replace(tmp, path)
        self.synthesised += 1
        return path

    def prewarm(self) -> None:
        """Synthesise the fixed prompts now (at start-up), not at the first sale."""
        hints = [spoken_reason(code) for code in _face_errors.POOR_CAPTURE]
        for text in [t for t in PROMPTS.values() if t] + hints:
            try:
                self.audio(text)
            except SynthError as exc:
                log.warning("voice prewarm failed: %s", exc)
                return

    # -- speaking

    def start(self) -> "Voice":
        self._thread = threading.Thread(target=self._run, name="voice", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        self._offer(None)
        self.player.stop()
        if self._thread:
            self._thread.join(5)

    def set_enabled(self, on: bool) -> None:
        self.enabled = bool(on)
        if not on:
            self.player.stop()

    def say(self, prompt: str, reason: str | None = None) -> str | None:
        """Speak a prompt (a key of PROMPTS), with a reason code for refusals.
        Returns the sentence, or None when the voice is off."""
        if prompt not in PROMPTS:
            raise KeyError(prompt)
        text = PROMPTS[prompt] + (spoken_reason(reason) if reason else "")
        if not self.enabled:
            return None
        if self._thread is None:
            self._speak(text)
        else:
            self._offer(text)
        return text

    def _offer(self, text) -> None:
        while True:
            try:
                self._queue.put_nowait(text)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()   # drop the stale prompt not yet started
                except queue.Empty:
                    pass

    def _run(self) -> None:
        while not self._stopping:
            text = self._queue.get()
            if text is None or self._stopping:
                continue
            self._speak(text)

    def _speak(self, text: str) -> None:
        try:
            path = self.audio(text)
        except SynthError as exc:
            log.warning("voice prompt not synthesised text=%s: %s", text, exc)
            return
        if self.enabled:
            self.player.play(path, text)
