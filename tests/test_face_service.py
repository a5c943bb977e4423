"""The counter's face check end to end: the camera twin plays real photos, the
service identifies the farmer, and liveness is asked for by product class."""

import cv2
import numpy as np
import pytest

from firmware.face import errors
from firmware.face.enrollment import enroll
from firmware.face.gallery import Gallery
from firmware.face.service import FaceService
from hardware.camera import open_camera
from tests.support import face_images as fi
from tests.support.face_images import face_images, face_pipeline  # noqa: F401


@pytest.fixture(scope="module")
def service(face_pipeline):
    """Enrolled once for the module: identifying and verifying only read the
    gallery; the one test that swaps a gallery builds a service of its own."""
    g = Gallery()
    for subject, name in (("330110-obama", "obama2.jpg"), ("330110-biden", "biden.jpg"),
                          ("330110-collins", "astronaut.png")):
        g, _ = enroll(face_pipeline, g, subject, [(name, fi.load(name))])
    return FaceService(face_pipeline, g)


def save(folder, frames):
    folder.mkdir(parents=True, exist_ok=True)
    for i, rgb in enumerate(frames):
        cv2.imwrite(str(folder / ("%03d.png" % i)), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder


def test_a_farmer_in_front_of_the_camera_twin_is_identified(service, tmp_path):
    frame = np.ascontiguousarray(fi.fit_width(fi.load("obama.jpg"), 640)[:480])
    folder = save(tmp_path / "cam", [frame])
    with open_camera("file://%s/?fps=15" % folder) as cam:
        got = cam.read(timeout=5)
    result = service.identify(got.image)
    assert result.subject == "330110-obama" and result.reason is None


def test_a_poor_frame_is_an_answer_with_a_reason(service):
    assert service.identify(fi.too_dark()).reason == errors.TOO_DARK
    refused = service.verify("330110-obama", fi.two_faces())
    assert not refused.match and refused.reason == errors.SEVERAL_FACES
    assert service.verify("330110-obama", fi.load("obama3.jpg")).match
    assert service.verify("330110-nobody", fi.load("obama3.jpg")).reason == errors.NOT_ENROLLED


def test_a_photo_held_up_for_a_restricted_product_is_refused(service, tmp_path):
    face = np.ascontiguousarray(fi.fit_width(fi.load("obama.jpg"), 640)[:600])
    rng = np.random.default_rng(5)
    folder = save(tmp_path / "photo", [fi.hand_held(face, rng) for _ in range(6)])
    with open_camera("file://%s/?fps=30" % folder) as cam:
        frames = [f.image for f in cam.burst(6, timeout=5)]
    assert len(frames) == 6
    restricted = service.identify_burst(frames, "restricted")
    assert restricted.identification.subject == "330110-obama"  # the face matches...
    assert restricted.subject is None and restricted.reason == errors.NOT_LIVE  # ...but it is a photo
    normal = service.identify_burst(frames, "normal")
    assert normal.liveness is None and normal.subject == "330110-obama"


def test_a_blinking_farmer_passes_liveness(service):
    face = np.ascontiguousarray(fi.fit_width(fi.load("obama.jpg"), 640)[:600])
    shut = fi.closed_eyes(face)
    result = service.identify_burst([face, face, shut, face, face, face], "restricted")
    assert result.subject == "330110-obama" and result.liveness.blinked


def test_a_burst_without_a_usable_frame_gives_the_commonest_reason(service):
    result = service.identify_burst([fi.too_blurred(), fi.too_blurred(), fi.no_face()], "normal")
    assert result.subject is None and result.reason == errors.TOO_BLURRED


def test_a_new_gallery_is_used_from_the_next_frame_without_a_restart(face_pipeline):
    g = Gallery()
    g, _ = enroll(face_pipeline, g, "330110-biden", [("biden.jpg", fi.load("biden.jpg"))])
    running = FaceService(face_pipeline, g)
    frame = fi.load("obama.jpg")
    assert running.identify(frame).reason == errors.NO_MATCH
    bigger, _ = enroll(face_pipeline, g, "330110-obama", [("obama2.jpg", fi.load("obama2.jpg"))])
    running.set_gallery(bigger)  # what config sync does when a new gallery is stored
    assert running.identify(frame).subject == "330110-obama"
    running.set_gallery(Gallery())
    assert running.identify(frame).reason == errors.GALLERY_EMPTY
