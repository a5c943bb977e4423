"""The capture pipeline on real photographs: usable faces are encoded, and each
poor capture is refused with the reason the clerk can act on."""

import numpy as np
import pytest

from firmware.face import errors, quality
from firmware.face.errors import PoorCapture
from firmware.face.pipeline import CaptureConfig, FacePipeline, as_rgb
from protocols import reasons
from tests.support import face_images as fi
from tests.support.face_images import face_images, face_pipeline, sample_encodings  # noqa: F401


@pytest.mark.parametrize("code", errors.POOR_CAPTURE)
def test_each_poor_capture_reason_is_produced_by_an_image_with_that_problem(face_pipeline, code):
    image = fi.poor_captures()[code]
    with pytest.raises(PoorCapture) as refused:
        face_pipeline.capture(image)
    assert refused.value.code == code


@pytest.mark.parametrize("code", errors.POOR_CAPTURE + (errors.NO_MATCH, errors.AMBIGUOUS, errors.NOT_LIVE))
def test_every_refusal_has_chinese_and_english_text(code):
    zh, en = reasons.text(code, "zh"), reasons.text(code, "en")
    assert zh != code and en != code
    assert any("\u4e00" <= ch <= "\u9fff" for ch in zh)
    assert en.isascii()


def test_every_genuine_sample_is_accepted(sample_encodings):
    refused = [(s.label, code) for s, _, code in sample_encodings if code is not None]
    assert refused == []
    assert all(enc.shape == (128,) and enc.dtype == np.float32 for _, enc, _ in sample_encodings)


def test_too_dark_is_reported_even_when_no_face_can_be_found(face_pipeline):
    black = np.full((480, 640, 3), 6, np.uint8)
    with pytest.raises(PoorCapture) as refused:
        face_pipeline.capture(black)
    assert refused.value.code == errors.TOO_DARK


def test_a_person_far_back_in_the_queue_does_not_count_as_a_second_face(face_pipeline):
    frame = fi.queue_scene()
    assert len(face_pipeline.detect(frame)) == 2  # both people are really visible
    capture = face_pipeline.capture(frame)
    top, right, bottom, left = capture.box
    assert right < 430 and bottom - top > 150  # the buyer in front was chosen


def test_a_stricter_minimum_face_size_refuses_a_face_the_default_accepts(face_images):
    image = fi.variants("obama3.jpg")["farther"]  # face ~106 px
    FacePipeline().capture(image)
    with pytest.raises(PoorCapture) as refused:
        FacePipeline(CaptureConfig(min_face_px=150)).capture(image)
    assert refused.value.code == errors.TOO_SMALL


def test_rgba_and_grey_images_are_accepted(face_pipeline):
    rgba = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(fi.path("32bit.png")))
    assert rgba.shape[2] == 4
    assert face_pipeline.capture(rgba).encoding.shape == (128,)
    grey = quality.luma(fi.load("obama.jpg"))
    assert face_pipeline.capture(grey).encoding.shape == (128,)


def test_as_rgb_refuses_what_is_not_an_image():
    with pytest.raises(ValueError):
        as_rgb(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError):
        as_rgb(np.zeros((10, 10, 2), np.uint8))


def test_a_640x480_frame_is_encoded_from_full_resolution_with_landmarks(face_pipeline):
    frame = fi.fit_width(fi.load("obama.jpg"), 640)[:480]
    capture = face_pipeline.capture(frame, landmarks=True)
    top, right, bottom, left = capture.box
    assert bottom - top >= 100
    assert len(capture.landmarks["left_eye"]) == 6 and len(capture.landmarks["chin"]) == 17


def test_sharpness_falls_with_blur_and_ignores_brightness_and_contrast():
    box = fi.FACE_BOXES["biden.jpg"]
    face = quality.crop(quality.luma(fi.load("biden.jpg")), box)
    blurred = quality.crop(quality.luma(fi.too_blurred("biden.jpg")), box)
    assert quality.sharpness(blurred) < 0.7 * quality.sharpness(face)
    sharp = quality.sharpness(face)
    for gain, offset in ((0.5, 40), (0.3, 0), (1.2, 0), (0.8, 30)):
        changed = np.clip(face.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)
        assert quality.sharpness(changed) == pytest.approx(sharp, rel=0.03), (gain, offset)
