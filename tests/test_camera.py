"""The camera and its simulated twin: chosen by URL, frames at a steady rate from a
reader thread, reads bounded by a deadline, and a camera that disappears is
reported and reopened."""

import functools
import http.server
import shutil
import threading
import time

import cv2
import numpy as np
import pytest

from hardware.camera import (Camera, CameraUnavailable, FrameSource, OpenCVSource, StillsSource, open_camera,
                             parse_url)
from protocols import reasons


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.01):
    """Poll a condition until it holds or the deadline passes; returns its last value."""
    deadline = time.monotonic() + timeout
    event = threading.Event()
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        event.wait(interval)


def write_stills(folder, count=4, size=(480, 640)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img = np.full((*size, 3), 40 * i, np.uint8)
        img[:, :, 2] = 200  # BGR on disk: strong red after conversion to RGB
        cv2.imwrite(str(folder / ("frame%02d.jpg" % i)), img)
    return folder


class Events:
    def __init__(self):
        self.seen = []
        self.lock = threading.Lock()

    def __call__(self, kind, detail):
        with self.lock:
            self.seen.append((kind, detail))

    def kinds(self):
        with self.lock:
            return [k for k, _ in self.seen]


@pytest.mark.parametrize("url, kind, target, fps", [
    ("v4l2://0", OpenCVSource, 0, None),
    ("v4l2:///dev/video2?width=1280&height=720", OpenCVSource, "/dev/video2", None),
    ("file:///srv/faces/*.jpg?fps=5", StillsSource, "/srv/faces/*.jpg", 5.0),
    ("file:///srv/faces/", StillsSource, "/srv/faces/", None),
    ("file:///srv/faces/one.png", StillsSource, "/srv/faces/one.png", None),
    ("file:///srv/clips/counter.mp4", OpenCVSource, "/srv/clips/counter.mp4", None),
    ("rtsp://cam.local/stream1?fps=10", OpenCVSource, "rtsp://cam.local/stream1", 10.0),
    ("http://cam.local/video.mjpg?user=a%20b&fps=12", OpenCVSource, "http://cam.local/video.mjpg?user=a+b", 12.0),
])
def test_camera_urls_pick_the_source(url, kind, target, fps):
    source, rate = parse_url(url)
    assert isinstance(source, kind)
    assert (source.target if kind is OpenCVSource else source.images) == target
    assert rate == fps
    if kind is OpenCVSource:
        assert source.kind == ("device" if url.startswith("v4l2") else "file" if url.startswith("file") else "stream")


def test_a_list_of_images_is_a_twin_and_bad_urls_are_refused():
    source, _ = parse_url(["/a.jpg", "/b.jpg"])
    assert isinstance(source, StillsSource) and source.images == ["/a.jpg", "/b.jpg"]
    with pytest.raises(ValueError):
        parse_url("gopher://cam")
    with pytest.raises(ValueError):
        parse_url("file:///x/*.jpg?fps=0")


def test_stills_play_as_rgb_frames_at_a_steady_rate(tmp_path):
    write_stills(tmp_path / "cam")
    with open_camera("file://%s/*.jpg?fps=25" % (tmp_path / "cam")) as cam:
        first = cam.read(timeout=5)
        assert first is not None and first.image.shape == (480, 640, 3)
        assert first.image[..., 0].mean() > 180 and first.image[..., 2].mean() < 60  # red is channel 0
        frames = cam.burst(25, timeout=5)
    assert len(frames) == 25
    seqs = [f.seq for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + 25))
    gaps = np.diff([f.timestamp for f in frames])
    assert np.median(gaps) == pytest.approx(1 / 25, rel=0.2)
    assert gaps.max() < 3 / 25


def test_frames_are_timestamped_with_the_injected_clock(tmp_path):
    write_stills(tmp_path / "cam", count=1)
    ticks = iter(range(10**6))
    with open_camera([str(tmp_path / "cam" / "frame00.jpg")], clock=lambda: next(ticks) * 1e-3) as cam:
        frame = cam.read(timeout=5)
    assert frame is not None and frame.timestamp < 1.0


class BlockingSource(FrameSource):
    """A device whose read hangs, like an RTSP stream that went quiet."""

    label = "hung"

    def __init__(self):
        self.release = threading.Event()
        self.reads = 0

    def open(self):
        pass

    def read(self):
        self.reads += 1
        if self.reads > 1:
            self.release.wait(30)
        return np.zeros((4, 4, 3), np.uint8)


def test_a_hung_device_never_blocks_the_reader_of_frames():
    source = BlockingSource()
    cam = Camera(source, stall_after=0.3).start()
    try:
        first = cam.read(timeout=5)
        assert first is not None
        started = time.monotonic()
        assert cam.read(timeout=0.2, after=first.seq) is None
        assert time.monotonic() - started < 1.0
        assert wait_until(lambda: cam.status == "stalled", timeout=5)
    finally:
        source.release.set()
        cam.close()
    assert cam.status == "stopped"


def test_a_camera_that_disappears_is_reported_and_reopened(tmp_path):
    folder = write_stills(tmp_path / "cam")
    gone = tmp_path / "unplugged"
    events = Events()
    cam = open_camera("file://%s/?fps=50" % folder, on_event=events, reopen_delay=(0.05, 0.2))
    try:
        before = cam.read(timeout=5)
        assert before is not None and cam.status == "streaming"
        shutil.move(str(folder), str(gone))  # unplugged
        assert wait_until(lambda: "lost" in events.kinds())
        assert wait_until(lambda: cam.status == "lost")
        assert reasons.known(CameraUnavailable().code)
        lost_seq = cam.latest().seq
        shutil.move(str(gone), str(folder))  # plugged back in
        assert wait_until(lambda: "reopened" in events.kinds())
        after = cam.read(timeout=5, after=lost_seq)
        assert after is not None and after.seq > lost_seq and cam.status == "streaming"
    finally:
        cam.close()
    assert events.kinds().count("lost") == 1  # one report per outage, not one per retry
    assert cam.losses == 1 and cam.reopens == 1


def test_a_missing_device_is_reported_lost_not_raised(tmp_path):
    events = Events()
    cam = open_camera("v4l2:///dev/agri-no-such-camera", on_event=events, reopen_delay=(0.05, 0.1))
    try:
        assert wait_until(lambda: "lost" in events.kinds())
        assert cam.status == "lost" and cam.read(timeout=0.1) is None
    finally:
        cam.close()


def test_a_non_looping_twin_ends(tmp_path):
    write_stills(tmp_path / "cam", count=3)
    events = Events()
    with open_camera("file://%s/*.jpg?fps=100&loop=0" % (tmp_path / "cam"), on_event=events) as cam:
        assert wait_until(lambda: cam.status == "ended")
        assert cam.frames == 3
    assert events.kinds() == ["opened", "ended"]


@pytest.fixture
def clip(tmp_path):
    """A real MJPEG video file written by OpenCV: 12 frames, 640x480."""
    path = tmp_path / "counter.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (640, 480))
    assert writer.isOpened()
    for i in range(12):
        img = np.zeros((480, 640, 3), np.uint8)
        img[:, :, 2] = 220  # red in BGR
        cv2.putText(img, str(i), (200, 300), cv2.FONT_HERSHEY_SIMPLEX, 5, (255, 255, 255), 8)
        writer.write(img)
    writer.release()
    return path


def test_a_video_file_plays_through_opencv_and_loops(clip):
    with open_camera("file://%s?fps=60" % clip) as cam:
        frames = cam.burst(30, timeout=10)  # more frames than the file holds
        assert cam.status == "streaming"
    assert len(frames) == 30
    assert frames[0].image.shape == (480, 640, 3) and frames[0].image[..., 0].mean() > 150


def test_an_http_stream_plays_through_opencv(clip):
    class Files(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    class Quiet(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            pass  # the client hangs up mid-file when the camera closes

    server = Quiet(("127.0.0.1", 0), functools.partial(Files, directory=str(clip.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = "http://127.0.0.1:%d/%s?fps=30" % (server.server_address[1], clip.name)
        with open_camera(url) as cam:
            frame = cam.read(timeout=10)
        assert frame is not None and frame.image.shape == (480, 640, 3)
    finally:
        server.shutdown()
        server.server_close()
