"""The harder test set (issue 17, item 3): 27 people from photos shipped in pip
packages, crops from group photos, upscaled small faces, dim and bright light,
JPEG, tilted heads, a cap and a mask band (tests/support/face_hardset.py).

At the default threshold: no false accept, 1:1 or 1:N, and at most 3% false
rejects. The code before issue 17 refused 52 of the 203 genuine probes here,
mostly as "too blurred" or "too dark" (docs/face.md)."""

import pytest

from firmware.face import errors
from firmware.face.matching import MatchConfig
from tests.support import face_hardset as hs
from tests.support.face_images import face_images, face_pipeline  # noqa: F401

# The first test to run builds the harder set's encodings (and the reference
# library's) for the whole process, and on a fresh machine fetches its photos
# with pip: minutes on a busy 2-CPU machine, past the suite's 300 s default.
pytestmark = pytest.mark.timeout(900)


DEFAULT = MatchConfig().max_distance


@pytest.fixture(scope="module")
def hardset(face_pipeline):
    hs.fetch()
    return hs.rates(DEFAULT)


def test_the_set_has_at_least_twenty_enrolled_people_and_strangers_besides():
    people = set(hs.PEOPLE)
    assert len(people - set(hs.STRANGERS)) >= 20 and len(hs.STRANGERS) >= 5
    assert set(hs.STRANGERS) <= people
    labels = [p.label for p in hs.probes()]
    assert len(labels) == len(set(labels))


def test_every_enrolment_photo_is_accepted(face_pipeline):
    refused = {person: e for person, e in hs.enrolled().items() if isinstance(e, str)}
    assert refused == {}


def test_no_stranger_and_no_other_person_is_accepted_at_the_default_threshold(hardset):
    assert hardset.impostor > 4000
    assert hardset.false_accepts == []
    assert hardset.identify_false_accepts == []


def test_at_most_three_percent_of_genuine_probes_are_refused_at_the_default_threshold(hardset):
    assert hardset.genuine > 200
    assert hardset.frr <= 0.03, hardset.false_rejects


def test_no_genuine_probe_is_refused_as_too_blurred_or_too_dark(hardset):
    """What the issue saw most: sharp faces in dim or bright light, and upscaled
    small faces, refused by the quality gate although the encoder handles them."""
    gate = [(label, why) for label, why in hardset.false_rejects if why in (errors.TOO_BLURRED, errors.TOO_DARK)]
    assert gate == []


def test_the_very_image_enrolled_is_identified_as_its_person(face_pipeline):
    from firmware.face.gallery import Gallery
    from firmware.face.matching import Matcher

    usable = {p: e for p, e in hs.enrolled().items() if not isinstance(e, str)}
    gallery = Gallery()
    for person, encoding in usable.items():
        gallery = gallery.with_subject(person, [encoding])
    matcher = Matcher(gallery)
    wrong = []
    for person, image in hs.enrolment().items():
        result = matcher.identify(face_pipeline.capture(image).encoding)
        if result.subject != person:
            wrong.append((person, result))
    assert wrong == []


def test_the_cli_identifies_the_photo_it_enrolled_and_its_dimmer_and_upscaled_copies(tmp_path, face_pipeline):
    """The issue's own steps: `python -m firmware face enroll` on a face cut from
    a group photo and upscaled, then `identify` on the same file, a dimmer copy
    and a copy from a 36-px camera. The code before refused all three as blurred
    (and the enrolment too, for this face)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import cv2
    import numpy as np

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"), PYTHONPATH=str(root))
    env.pop("AGRI_QUOTA_FACE_KEY_FILE", None)
    image, box = hs.base_crop(*hs.PEOPLE["t1-second"][0])
    files = {"base": image, "dim": hs.dim(image, box, np.random.default_rng(3)),
             "low_res": hs.low_res(image, box, None)}
    for name, rgb in files.items():
        cv2.imwrite(str(tmp_path / (name + ".png")), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def face(*args):
        proc = subprocess.run([sys.executable, "-m", "firmware", "face", *map(str, args)], cwd=root, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    gallery = tmp_path / "shop.gallery"
    enrolled = face("enroll", "--gallery", gallery, "--subject", "330110-0002", "--image", tmp_path / "base.png")
    assert enrolled["enrolled"] == 1, enrolled
    for name in files:
        found = face("identify", "--gallery", gallery, "--image", tmp_path / (name + ".png"))
        assert found["subject"] == "330110-0002", (name, found)


def test_every_enrolment_crop_shown_at_half_size_is_identified(face_pipeline):
    """A farmer a step further back: each enrolment crop at half size (faces
    around 80 px). The 80-px minimum before refused 9 of the 20 as too small,
    though the encoder reads them within 0.12 of the full-size face."""
    import cv2

    from firmware.face.gallery import Gallery
    from firmware.face.matching import Matcher

    usable = {p: e for p, e in hs.enrolled().items() if not isinstance(e, str)}
    gallery = Gallery()
    for person, encoding in usable.items():
        gallery = gallery.with_subject(person, [encoding])
    matcher = Matcher(gallery)
    wrong = []
    for person, image in hs.enrolment().items():
        half = cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        try:
            result = matcher.identify(face_pipeline.capture(half).encoding)
        except errors.PoorCapture as exc:
            wrong.append((person, exc.code))
            continue
        if result.subject != person:
            wrong.append((person, result.reason, result.distance))
    assert wrong == []
