"""The counter camera: a real device or stream through OpenCV, or its simulated twin
(still images played as frames), chosen by URL like every device here.

URLs (`open_camera`):

    v4l2://0                       device index 0 (a USB camera, the Pi camera via libcamera's V4L2 shim)
    v4l2:///dev/video2             a device node
    file:///srv/faces/*.jpg        the twin: stills matching a glob, in name order, looped
    file:///srv/faces/             the twin: every image in a folder
    file:///srv/clips/counter.mp4  a recorded video file, looped
    rtsp://cam.local/stream1       a network camera (FFmpeg); http:// and https:// too

Query parameters: `fps` (default 15: frames offered per second), `width` and
`height` (asked of a device), `loop` (0 plays a file or stills once, then reports
the camera lost). A Python list of image paths is accepted in place of a URL.

Why a reader thread: a V4L2 or RTSP `read()` blocks for a frame period or, on a
dying stream, for seconds. The agent must never stall on it, so one thread per
camera reads continuously and keeps only the newest frame (old frames are stale
faces, never worth queueing); consumers call `read()` to wait for a frame newer
than the one they had, with a deadline. Stills and files are paced at `fps`
with the injected clock so the twin behaves like a device.

A camera that disappears (USB unplugged, stream dropped, the twin's images
deleted) is reported once through `on_event("lost", detail)` and the status, and
reopened with backoff (0.2 s doubling to 5 s) until it returns ("reopened").
Frames are RGB, as face_recognition and Pillow expect; OpenCV's BGR stops here.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import cv2
import numpy as np

from protocols import reasons

log = logging.getLogger(__name__)

CAMERA_UNAVAILABLE = "camera_unavailable"
reasons.register({
    CAMERA_UNAVAILABLE: ("摄像头不可用，正在重新连接", "Camera unavailable: reconnecting"),
})

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DEFAULT_FPS = 15.0
STREAM_TIMEOUT_MS = 5000


class CameraUnavailable(reasons.ReasonError):
    def __init__(self, detail=""):
        reasons.ReasonError.__init__(self, CAMERA_UNAVAILABLE, detail)


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # RGB uint8, H x W x 3
    seq: int  # 1, 2, ... per camera, never reused (also across reopenings)
    timestamp: float  # the camera's clock when the frame was taken


# ---- sources: what opens and reads; the Camera adds the thread ------------------------

class FrameSource:
    """One device or twin. `read` returns an RGB frame, or None when the source is lost."""

    label = "source"
    paced = False  # True when the Camera must pace reads (files, stills)
    ended = False  # True once a source that does not loop has played everything
    fps: float | None = None  # the source's own rate, when it knows one

    def open(self) -> None:
        raise NotImplementedError

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class OpenCVSource(FrameSource):
    """A V4L2 device, a video file or a network stream through cv2.VideoCapture."""

    def __init__(self, target, kind: str, width: int | None = None, height: int | None = None, loop: bool = True):
        if kind not in ("device", "file", "stream"):
            raise ValueError("kind must be device, file or stream, not %r" % kind)
        self.target, self.kind = target, kind
        self.width, self.height, self.loop = width, height, loop
        self.is_file = kind == "file"
        self.paced = self.is_file
        self.label = str(target)
        self._cap = None

    def open(self) -> None:
        if self.is_file and not os.path.exists(self.target):
            raise CameraUnavailable("%s does not exist" % self.target)
        if self.kind == "device":
            cap = cv2.VideoCapture(self.target, cv2.CAP_V4L2)
        elif self.is_file:
            cap = cv2.VideoCapture(self.target)
        else:
            cap = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
        if not cap.isOpened():
            cap.release()
            raise CameraUnavailable("cannot open %s" % self.label)
        if self.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        rate = cap.get(cv2.CAP_PROP_FPS)
        self.fps = rate if rate and 0 < rate < 240 else None
        self._cap = cap

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        ok, bgr = self._cap.read()
        if not ok and self.is_file and self.loop and os.path.exists(self.target):
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)  # end of the file: play it again
            ok, bgr = self._cap.read()
        if not ok and self.is_file and not self.loop and os.path.exists(self.target):
            self.ended = True
        if not ok or bgr is None:
            return None
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class StillsSource(FrameSource):
    """The simulated twin: still images played as frames, in name order.

    The file list is taken again at every (re)opening, so a test or the simulator
    can make the camera disappear by emptying the folder and come back by
    refilling it, exactly like an unplugged and replugged USB camera.
    """

    paced = True

    def __init__(self, images, loop: bool = True):
        self.images = images  # a glob pattern, a folder, or a list of paths
        self.loop = loop
        self.label = images if isinstance(images, str) else "%d stills" % len(images)
        self._paths: list[str] = []
        self._next = 0

    def _list(self) -> list[str]:
        if not isinstance(self.images, str):
            return [str(p) for p in self.images if os.path.isfile(p)]
        if os.path.isdir(self.images):
            return sorted(str(p) for p in Path(self.images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return sorted(glob.glob(self.images))

    def open(self) -> None:
        self._paths = self._list()
        self._next = 0
        if not self._paths:
            raise CameraUnavailable("no images at %s" % self.label)

    def read(self) -> np.ndarray | None:
        if self._next >= len(self._paths):
            if not self.loop:
                self.ended = True
                return None
            self._next = 0
        path = self._paths[self._next]
        self._next += 1
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            return None  # deleted or unreadable: the twin's way of being unplugged
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# ---- the camera: one reader thread, the newest frame, reopen on loss -----------------

class Camera:
    """Frames from a source at a steady rate, read without blocking the agent."""

    def __init__(self, source: FrameSource, fps: float | None = None, clock: Callable[[], float] = time.monotonic,
                 on_event: Callable[[str, str], None] | None = None,
                 reopen_delay: tuple[float, float] = (0.2, 5.0), stall_after: float = 2.0):
        self.source = source
        self.fps = fps
        self.clock = clock
        self.on_event = on_event
        self.reopen_delay = reopen_delay
        self.stall_after = stall_after
        self.frames = 0
        self.losses = 0
        self.reopens = 0
        self._status = "stopped"
        self._latest: Frame | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- consumer side --

    def start(self) -> "Camera":
        if self._thread is None:
            self._stop.clear()
            self._set_status("starting")
            self._thread = threading.Thread(target=self._run, name="camera-%s" % self.source.label, daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.source.close()
        self._set_status("stopped")

    def __enter__(self) -> "Camera":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def status(self) -> str:
        """starting, streaming, stalled (no frame for `stall_after` s), lost, ended, stopped."""
        with self._cond:
            status, latest = self._status, self._latest
        if status == "streaming" and latest is not None and self.clock() - latest.timestamp > self.stall_after:
            return "stalled"
        return status

    def latest(self) -> Frame | None:
        with self._cond:
            return self._latest

    def read(self, timeout: float = 1.0, after: int = 0) -> Frame | None:
        """The newest frame with seq > `after`, waiting up to `timeout`; None on timeout."""
        with self._cond:
            self._cond.wait_for(lambda: (self._latest is not None and self._latest.seq > after)
                                or self._stop.is_set(), timeout)
            latest = self._latest
        return latest if latest is not None and latest.seq > after else None

    def burst(self, count: int, timeout: float) -> list[Frame]:
        """`count` consecutive new frames (for liveness), or fewer if the deadline passes."""
        deadline = self.clock() + timeout
        frames, last = [], (self.latest().seq if self.latest() else 0)
        while len(frames) < count:
            remaining = deadline - self.clock()
            if remaining <= 0:
                break
            frame = self.read(remaining, after=last)
            if frame is None:
                break
            frames.append(frame)
            last = frame.seq
        return frames

    # -- reader thread --

    def _set_status(self, status: str) -> None:
        with self._cond:
            self._status = status

    def _emit(self, kind: str, detail: str) -> None:
        log.log(logging.WARNING if kind == "lost" else logging.INFO,
                "camera %s source=%s detail=%s", kind, self.source.label, detail)
        if self.on_event is not None:
            try:
                self.on_event(kind, detail)
            except Exception:  # a listener's bug must not kill the reader
                log.exception("camera event listener failed")

    def _open_with_backoff(self, first: bool) -> bool:
        delay, longest = self.reopen_delay
        reported = not first  # a loss was already reported by the read that failed
        while not self._stop.is_set():
            try:
                self.source.open()
            except Exception as exc:  # CameraUnavailable, or whatever a driver raises
                if not reported:
                    self.losses += 1
                    self._set_status("lost")
                    self._emit("lost", exc.detail if isinstance(exc, CameraUnavailable) else repr(exc))
                    reported = True
                self._stop.wait(delay)
                delay = min(delay * 2, longest)
                continue
            if first:
                self._emit("opened", self.source.label)
            else:
                self.reopens += 1
                self._emit("reopened", self.source.label)
            self._set_status("streaming")
            return True
        return False

    def _run(self) -> None:
        first = True
        seq = 0
        while not self._stop.is_set():
            if not self._open_with_backoff(first):
                break
            first = False
            rate = self.fps or self.source.fps or DEFAULT_FPS
            period = 1.0 / rate
            due = self.clock()
            while not self._stop.is_set():
                try:
                    image = self.source.read()
                except Exception as exc:  # drivers raise odd things when unplugged
                    log.debug("camera read raised: %r", exc)
                    image = None
                if image is None and self.source.ended:
                    self._set_status("ended")
                    self._emit("ended", self.source.label)
                    self.source.close()
                    return
                if image is None:
                    self.source.close()
                    self.losses += 1
                    self._set_status("lost")
                    self._emit("lost", "no frame from %s" % self.source.label)
                    break
                seq += 1
                frame = Frame(image, seq, self.clock())
                with self._cond:
                    self._latest = frame
                    self.frames += 1
                    self._cond.notify_all()
                if self.source.paced:
                    due += period
                    now = self.clock()
                    if due < now - period:
                        due = now  # fell behind (a slow disk): resync, never burst
                    self._stop.wait(max(0.0, due - now))
        self.source.close()


def parse_url(url):
    """(source, fps) for a camera URL or a list of image paths; see module doc."""
    if isinstance(url, (list, tuple)):
        return StillsSource([str(p) for p in url]), None
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = dict(pairs)
    fps = float(query["fps"]) if "fps" in query else None
    loop = query.get("loop", "1") not in ("0", "false", "no")
    width = int(query["width"]) if "width" in query else None
    height = int(query["height"]) if "height" in query else None
    if fps is not None and fps <= 0:
        raise ValueError("fps must be positive in %s" % url)
    scheme = parts.scheme.lower()
    if scheme == "v4l2":
        where = unquote(parts.netloc + parts.path)
        target = int(where) if where.isdigit() else where
        return OpenCVSource(target, "device", width, height), fps
    if scheme == "file":
        path = unquote(parts.path)
        if any(ch in path for ch in "*?[") or os.path.isdir(path) or path.endswith("/") \
                or path.lower().endswith(IMAGE_SUFFIXES):
            return StillsSource(path, loop), fps
        return OpenCVSource(path, "file", loop=loop), fps
    if scheme in ("rtsp", "rtsps", "http", "https"):
        rest = [(k, v) for k, v in pairs if k not in ("fps", "loop", "width", "height")]
        bare = parts._replace(query=urlencode(rest)).geturl()
        return OpenCVSource(bare, "stream", width, height), fps
    raise ValueError("unknown camera URL %r (use v4l2://, file://, rtsp://, http://)" % url)


def open_camera(url, clock: Callable[[], float] = time.monotonic, on_event=None, **kwargs) -> Camera:
    """A started Camera for a URL; close it (or use `with`) when done."""
    source, fps = parse_url(url)
    return Camera(source, fps=fps, clock=clock, on_event=on_event, **kwargs).start()
