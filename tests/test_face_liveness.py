"""Liveness over a burst: a photo held up to the camera is refused; a blink or a
head turn passes; and the documented blind spot (a tilted photo) is measured."""

import numpy as np
import pytest

from firmware.face import errors, liveness
from firmware.face.liveness import LivenessConfig, LivenessPolicy
from tests.support import face_images as fi
from tests.support.face_images import face_images, face_pipeline  # noqa: F401


def burst(pipeline, frames):
    out = []
    for frame in frames:
        capture = pipeline.capture(frame, landmarks=True)
        out.append((capture.landmarks, capture.encoding))
    return out


@pytest.fixture(scope="module")
def face(face_images):
    """One frame for the module, read-only like the photos it comes from: a
    test derives frames from it and cannot edit it for the next."""
    frame = np.ascontiguousarray(fi.fit_width(fi.load("obama.jpg"), 640)[:600])
    frame.setflags(write=False)
    return frame


def test_a_photo_held_up_to_the_camera_is_refused(face_pipeline, face):
    rng = np.random.default_rng(11)
    frames = [fi.hand_held(face, rng) for _ in range(8)]
    result = liveness.check(burst(face_pipeline, frames))
    assert not result.live and result.reason == errors.NOT_LIVE
    assert not result.blinked and not result.moved


def test_a_blink_passes(face_pipeline, face):
    shut = fi.closed_eyes(face)
    frames = [face, face, shut, shut, face, face]
    result = liveness.check(burst(face_pipeline, frames))
    assert result.live and result.blinked
    assert result.eye_min < 0.65 * result.eye_open


def test_eyes_that_stay_shut_are_not_a_blink(face_pipeline, face):
    shut = fi.closed_eyes(face)
    result = liveness.check(burst(face_pipeline, [face, face, shut, shut, shut, shut]))
    assert not result.blinked


def test_a_head_turn_passes(face_pipeline):
    # Two real photos of one man facing the camera and turned to his left:
    # what a head turn during the burst shows the camera.
    ahead, turned = fi.load("obama.jpg"), fi.load("obama2.jpg")
    result = liveness.check(burst(face_pipeline, [ahead, ahead, ahead, turned, turned, turned]))
    assert result.live and result.moved and result.yaw_range > 0.15


def test_a_burst_switching_people_is_refused(face_pipeline):
    frames = [fi.load("obama.jpg")] * 3 + [fi.load("biden.jpg")] * 3
    result = liveness.check(burst(face_pipeline, frames))
    assert not result.live and result.reason == errors.NOT_LIVE


def test_too_few_frames_are_refused(face_pipeline, face):
    assert liveness.check(burst(face_pipeline, [face, face])).reason == errors.NOT_LIVE


def rocked(rgb, degrees):
    """The photo turned about its horizontal axis (top edge away from the camera)."""
    turned = fi.tilted(np.ascontiguousarray(np.rot90(rgb)), degrees)
    return np.ascontiguousarray(np.rot90(turned, -1))


def test_rocking_a_photo_backwards_does_not_fake_a_blink(face_pipeline, face):
    # The classic eye aspect ratio falls to ~0.69 here and would call it a blink.
    frames = [face, face, rocked(face, 30), rocked(face, 30), face, face]
    result = liveness.check(burst(face_pipeline, frames))
    assert not result.blinked and not result.live


def test_tilting_a_photo_one_way_does_not_fake_a_turn(face_pipeline, face):
    result = liveness.check(burst(face_pipeline, [face] * 3 + [fi.tilted(face, 45)] * 3))
    assert not result.moved and not result.live


def test_known_blind_spot_swinging_a_photo_both_ways_fakes_a_turn(face_pipeline, face):
    """Documented in docs/face.md: perspective moves the nose against the jaw edges,
    and -45 to +45 degrees spans more yaw than the 0.1 a real 12-degree turn gives."""
    swing = [fi.tilted(face, -45)] * 3 + [fi.tilted(face, 45)] * 3
    result = liveness.check(burst(face_pipeline, swing))
    assert result.moved and result.live


# ---- the rules on landmark measures alone ----------------------------------------------

def eye(height: float, width: float = 30.0):
    """Six eye points, lids `height` apart."""
    h = height / 2
    return [(0, 0), (width / 3, -h), (2 * width / 3, -h), (width, 0), (2 * width / 3, h), (width / 3, h)]


def marks(openness: float, nose_x: float = 50.0):
    """Landmarks of a face whose eye openness (eye height / eye-to-nose-tip) is given."""
    chin = [(0, 40 + i) for i in range(8)] + [(50, 110)] + [(100, 48 - i) for i in range(8)]
    left = [(x + 20, y + 40) for x, y in eye(openness * 40)]
    right = [(x + 55, y + 40) for x, y in eye(openness * 40)]
    return {"left_eye": left, "right_eye": right, "chin": chin,
            "nose_bridge": [(50, 45), (50, 55), (50, 65), (nose_x, 75)],
            "nose_tip": [(44, 78), (47, 79), (50, 80), (53, 79), (56, 78)]}


def test_openness_is_eye_height_over_eye_to_nose_height():
    assert liveness.measures(marks(0.12))[0] == pytest.approx(0.12)


@pytest.mark.parametrize("levels, blinked", [
    ([0.3, 0.3, 0.3, 0.3, 0.3, 0.3], False),
    ([0.3, 0.3, 0.12, 0.1, 0.3, 0.3], True),
    ([0.3, 0.29, 0.31, 0.12, 0.13, 0.12], False),  # closes and stays shut
    ([0.12, 0.1, 0.3, 0.3, 0.3, 0.3], False),  # opens only: no open-shut-open
    ([0.3, 0.28, 0.25, 0.27, 0.3, 0.29], False),  # jitter of a still photo
])
def test_blink_needs_open_shut_open(levels, blinked):
    frames = [(marks(level), np.zeros(128, np.float32)) for level in levels]
    assert liveness.check(frames).blinked is blinked


def test_measures_ignore_where_and_how_big_the_face_is():
    base = liveness.measures(marks(0.3, nose_x=58))
    angle = np.radians(12)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = {k: [tuple(1.7 * rot @ np.array(p) + (300, 90)) for p in v] for k, v in marks(0.3, nose_x=58).items()}
    assert liveness.measures(moved) == pytest.approx(base, abs=1e-9)


def test_liveness_is_required_per_product_class():
    policy = LivenessPolicy()
    assert policy.required_for("restricted") and not policy.required_for("normal")
    assert not policy.required_for("unknown-class")
    assert LivenessPolicy({"normal": True}).required_for("normal")
    assert LivenessConfig().min_frames >= 5
