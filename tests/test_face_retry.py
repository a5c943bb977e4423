"""The counter keeps trying on live frames (issue 17, item 4): a frame the farmer
can fix is answered with what to do, and the next frames from the camera are
tried until the face is usable or the few seconds are up."""

import cv2
import numpy as np
import pytest

from firmware.face import errors, retry
from firmware.face.enrollment import enroll
from firmware.face.errors import FaceError
from firmware.face.gallery import Gallery
from firmware.face.service import FaceService
from hardware.camera import open_camera
from protocols import reasons
from tests.support import face_images as fi
from tests.support.face_images import face_images, face_pipeline  # noqa: F401


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def refusing(codes, clock=None, step=0.5):
    """An attempt that refuses with each code in turn, then answers "ok"."""
    calls = []

    def attempt():
        calls.append(1)
        if clock is not None:
            clock.now += step
        if len(calls) <= len(codes):
            raise FaceError(codes[len(calls) - 1])
        return "ok"
    return attempt, calls


def test_fixable_refusals_are_hinted_once_each_and_the_next_frames_tried():
    attempt, calls = refusing([errors.TOO_SMALL, errors.TOO_SMALL, errors.TOO_DARK, errors.NO_FACE])
    hints = []
    assert retry.keep_trying(attempt, hints.append, monotonic=FakeClock()) == "ok"
    assert len(calls) == 5
    assert hints == [errors.TOO_SMALL, errors.TOO_DARK, errors.NO_FACE]


def test_after_the_deadline_the_last_refusal_is_the_answer():
    clock = FakeClock()
    attempt, calls = refusing([errors.TOO_DARK] * 100, clock, step=0.5)
    with pytest.raises(FaceError) as refused:
        retry.keep_trying(attempt, lambda code: None, seconds=4.0, monotonic=clock)
    assert refused.value.code == errors.TOO_DARK
    assert len(calls) == 8 and clock.now == pytest.approx(4.0)


@pytest.mark.parametrize("code", [errors.NO_MATCH, errors.AMBIGUOUS, errors.NOT_LIVE, errors.GALLERY_EMPTY])
def test_a_refusal_more_frames_cannot_fix_is_answered_at_once(code):
    attempt, calls = refusing([code] * 5)
    hints = []
    with pytest.raises(FaceError) as refused:
        retry.keep_trying(attempt, hints.append, monotonic=FakeClock())
    assert refused.value.code == code and len(calls) == 1 and hints == []


@pytest.mark.parametrize("code, spoken", [(errors.TOO_SMALL, "请靠近一点"), (errors.TOO_DARK, "光线太暗"),
                                          (errors.NO_FACE, "请正对摄像头")])
def test_each_hint_starts_with_what_to_do_in_chinese(code, spoken):
    assert reasons.text(code, "zh").split("：")[0] == spoken
    assert reasons.text(code, "en").isascii()


def test_a_farmer_stepping_up_to_the_camera_twin_is_identified_after_the_hints(face_pipeline, tmp_path):
    """The camera twin plays what a counter camera sees as the farmer arrives: a
    dark frame (the light not yet on), the farmer far back, then close and lit.
    The first two are hinted, the third identifies him."""
    g, _ = enroll(face_pipeline, Gallery(), "330110-obama", [("obama2.jpg", fi.load("obama2.jpg"))])
    service = FaceService(face_pipeline, g)
    close = np.ascontiguousarray(fi.fit_width(fi.load("obama.jpg"), 640)[:480])
    # Two frames of each moment at 1 frame/s: a try takes well under a second, so
    # each moment is seen even on a busy machine (the twin keeps only the newest frame).
    for i, rgb in enumerate([fi.too_dark(), fi.too_dark(), fi.too_small(), fi.too_small(), close, close]):
        cv2.imwrite(str(tmp_path / ("%03d.png" % i)), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    hints = []
    with open_camera("file://%s/?fps=1&loop=0" % tmp_path) as cam:
        seen = {"seq": 0}

        def attempt():
            frame = cam.read(timeout=5, after=seen["seq"])
            assert frame is not None, "the twin ran out of frames"
            seen["seq"] = frame.seq
            result = service.identify(frame.image)
            if result.reason:
                raise FaceError(result.reason)
            return result.subject

        assert retry.keep_trying(attempt, hints.append, seconds=10.0) == "330110-obama"
    assert hints == [errors.TOO_DARK, errors.TOO_SMALL]
