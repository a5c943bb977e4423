"""Parity with the reference encoder (issue 17, item 2): on every test image the
project's encoding lies within 0.05 of `face_recognition.face_encodings` with its
default settings; where the project deliberately differs (it finds faces the
reference misses: a turned head, a low-scoring face) it does no worse."""

import numpy as np
import pytest

from firmware.face import errors
from firmware.face.errors import PoorCapture
from firmware.face.matching import MatchConfig
from tests.support import face_hardset as hs
from tests.support import face_images as fi
from tests.support.face_images import face_images, face_pipeline, sample_encodings  # noqa: F401

# The first test to run builds the harder set's encodings (and the reference
# library's) for the whole process, and on a fresh machine fetches its photos
# with pip: minutes on a busy 2-CPU machine, past the suite's 300 s default.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


PARITY = 0.05


def test_the_photos_of_the_first_set_encode_as_the_reference_does(sample_encodings):
    far = []
    compared = 0
    for sample, encoding, _ in sample_encodings:
        expected = hs.reference_encoding(sample.image)
        if encoding is None or expected is None:
            continue
        compared += 1
        d = float(np.linalg.norm(encoding - expected))
        if d > PARITY:
            far.append((sample.label, round(d, 3)))
    assert compared >= 40
    assert far == []


def test_every_image_of_the_harder_set_encodes_as_the_reference_does(face_pipeline):
    hs.fetch()
    reference = hs.reference()
    far = []
    compared = 0
    for c in hs.captures():
        expected = reference[c.probe.label]
        if c.encoding is None or expected is None:
            continue
        compared += 1
        d = float(np.linalg.norm(c.encoding - expected))
        if d > PARITY:
            far.append((c.probe.label, round(d, 3)))
    for person, encoding in hs.enrolled().items():
        expected = reference["enrol/%s" % person]
        if not isinstance(encoding, str) and expected is not None:
            compared += 1
            d = float(np.linalg.norm(encoding - expected))
            if d > PARITY:
                far.append(("enrol/" + person, round(d, 3)))
    assert compared >= 220
    assert far == []


def test_where_the_project_finds_a_face_the_reference_misses_it_matches_its_person(face_pipeline):
    """The deliberate differences (a turned retry, a low-scoring face taken when
    nothing scores better): only images the reference gives nothing for are
    affected, and there the project's encodings are genuine matches."""
    reference = hs.reference()
    enrolled = hs.enrolled()
    extra = []
    for c in hs.captures():
        if reference[c.probe.label] is not None or c.encoding is None:
            continue
        own = enrolled.get(c.probe.person)
        distance = None if own is None or isinstance(own, str) else float(np.linalg.norm(c.encoding - own))
        extra.append((c.probe.label, distance))
    assert extra, "the set has no image only the project reads: the test proves nothing"
    enrolled_extra = [(label, d) for label, d in extra if d is not None]
    assert enrolled_extra and all(d <= MatchConfig().max_distance for _, d in enrolled_extra), enrolled_extra


def test_every_genuine_probe_the_reference_encodes_the_project_encodes_too(face_pipeline):
    """Same or better: the quality gate refuses no genuine probe the reference can
    encode. It does refuse two strangers' probes the reference encodes (the 52-px
    face behind Einstein, upscaled, then defocused or shrunk to 36 px), which is
    the gate's purpose: their encodings are the least trustworthy."""
    reference = hs.reference()
    lost = [(c.probe.label, c.code) for c in hs.captures()
            if c.encoding is None and reference[c.probe.label] is not None]
    genuine_lost = [(label, code) for label, code in lost if label.split("/")[0] not in hs.STRANGERS]
    assert genuine_lost == []
    assert all(code in (errors.TOO_BLURRED, errors.TOO_DARK) for _, code in lost), lost


def test_a_rgba_photo_and_its_rgb_copy_encode_alike(face_pipeline):
    rgb = fi.load("obama2.jpg")
    from PIL import Image

    rgba = np.asarray(Image.open(fi.path("32bit.png")))
    d = float(np.linalg.norm(face_pipeline.capture(rgba).encoding - face_pipeline.capture(rgb).encoding))
    assert d <= PARITY


def test_a_frame_with_no_face_is_refused_by_both(face_pipeline):
    image = fi.no_face()
    assert hs.reference_encoding(image) is None
    with pytest.raises(PoorCapture):
        face_pipeline.capture(image)
