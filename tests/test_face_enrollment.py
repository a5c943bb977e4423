"""Enrollment from photos: usable photos become encodings, poor ones are reported,
photos of two people are refused, and a second card for a known face is flagged."""

import numpy as np

from firmware.face import errors
from firmware.face.enrollment import MAX_ENCODINGS_PER_SUBJECT, enroll
from firmware.face.gallery import Gallery
from tests.support import face_images as fi
from tests.support.face_images import face_images, face_pipeline  # noqa: F401


def photos(*names):
    return [(n, fi.load(n)) for n in names]


def test_several_photos_become_encodings_and_nothing_else(face_pipeline):
    gallery, report = enroll(face_pipeline, Gallery(), "obama", photos("obama.jpg", "obama3.jpg"), created="t0")
    assert report.enrolled == 2 and report.total == 2 and report.reason is None
    assert gallery.subjects == ["obama"] and gallery.embeddings.shape == (2, 128)
    assert gallery.created == "t0"


def test_a_poor_photo_is_reported_and_the_good_ones_are_kept(face_pipeline):
    images = photos("obama.jpg") + [("blurred.jpg", fi.too_blurred()), ("cup.png", fi.no_face())]
    gallery, report = enroll(face_pipeline, Gallery(), "obama", images)
    assert report.enrolled == 1
    assert report.rejected == [("blurred.jpg", errors.TOO_BLURRED), ("cup.png", errors.NO_FACE)]


def test_no_usable_photo_leaves_the_gallery_unchanged(face_pipeline):
    before = Gallery()
    after, report = enroll(face_pipeline, before, "x", [("dark.jpg", fi.too_dark())])
    assert after is before and report.enrolled == 0 and report.reason == errors.TOO_DARK


def test_photos_of_two_people_are_refused(face_pipeline):
    before = Gallery()
    after, report = enroll(face_pipeline, before, "obama", photos("obama.jpg", "biden.jpg"))
    assert after is before and report.reason == errors.ENROLL_INCONSISTENT


def test_re_enrollment_replaces_unless_appending_and_keeps_a_bounded_number(face_pipeline):
    g, _ = enroll(face_pipeline, Gallery(), "obama", photos("obama.jpg"))
    g, _ = enroll(face_pipeline, g, "biden", photos("biden.jpg"))
    g, report = enroll(face_pipeline, g, "obama", photos("obama2.jpg", "obama3.jpg"))
    assert report.total == 2 and sorted(g.subjects) == ["biden", "obama"]
    g, report = enroll(face_pipeline, g, "obama", photos("obama.jpg"), append=True)
    assert report.total == 3
    many = photos("obama.jpg") * (MAX_ENCODINGS_PER_SUBJECT + 3)
    g, report = enroll(face_pipeline, g, "obama", many, append=True)
    assert report.total == MAX_ENCODINGS_PER_SUBJECT
    assert len(g.encodings_of("biden")) == 1


def test_a_face_already_enrolled_under_another_subject_is_flagged(face_pipeline):
    g, _ = enroll(face_pipeline, Gallery(), "330110-0001", photos("obama2.jpg"))
    g, report = enroll(face_pipeline, g, "330110-0002", photos("obama3.jpg"))
    assert [name for name, _ in report.similar] == ["330110-0001"]
    assert report.as_dict()["similar"][0]["subject"] == "330110-0001"
    assert not np.shares_memory(g.embeddings, fi.load("obama3.jpg"))
