"""Matching on real photographs: genuine pairs match, different people never do at
the default threshold, and 1:N identification refuses what it cannot tell apart."""

import itertools

import numpy as np
import pytest

from firmware.face import errors
from firmware.face.gallery import Gallery
from firmware.face.matching import MatchConfig, Matcher
from tests.support import face_images as fi
from tests.support.face_images import face_images, face_pipeline, sample_encodings  # noqa: F401

DEFAULT = MatchConfig().max_distance


def encode(pipeline, name):
    return pipeline.capture(fi.load(name)).encoding


def gallery_of(pipeline, subjects: dict) -> Gallery:
    """{subject: [photo names]} -> Gallery."""
    g = Gallery()
    for subject, names in subjects.items():
        g = g.with_subject(subject, [encode(pipeline, n) for n in names])
    return g


def pairs(sample_encodings, same: bool):
    usable = [(s, e) for s, e, _ in sample_encodings if e is not None]
    for (a, ea), (b, eb) in itertools.combinations(usable, 2):
        if (a.person == b.person) == same:
            yield a.label, b.label, float(np.linalg.norm(ea - eb))


def source(label: str) -> str:
    return label.split("/")[0]


def test_captures_of_the_same_photo_always_match_at_the_default_threshold(sample_encodings):
    """A photo and its realistic changes (light, JPEG, rotation, scale, crop)."""
    same_photo = [(a, b, d) for a, b, d in pairs(sample_encodings, same=True) if source(a) == source(b)]
    assert len(same_photo) > 150
    false_rejects = [(a, b, round(d, 3)) for a, b, d in same_photo if d > DEFAULT]
    assert false_rejects == []


def test_different_photos_of_the_same_person_mostly_match_at_the_default_threshold(sample_encodings):
    """Five photos of Obama taken years apart, two of them half cut off, each also
    changed: the default 0.45 (set for no false accept on the harder set,
    docs/face.md) refuses 21 of these 298 pairs (7%), all between copies of the
    two photos furthest apart (obama2.jpg and obama3.jpg, 0.43 apart as taken);
    0.5 refused none. Enrolling two photos of a farmer covers that at the counter
    (below)."""
    other_photo = [(a, b, d) for a, b, d in pairs(sample_encodings, same=True) if source(a) != source(b)]
    assert len(other_photo) > 250
    false_rejects = [(a, b, round(d, 3)) for a, b, d in other_photo if d > DEFAULT]
    assert len(false_rejects) <= 0.08 * len(other_photo), false_rejects
    assert all({source(a), source(b)} == {"obama2.jpg", "obama3.jpg"} for a, b, _ in false_rejects)
    assert max(d for _, _, d in other_photo) < DEFAULT + 0.03


def test_different_people_never_match_at_the_default_threshold(sample_encodings):
    impostor = list(pairs(sample_encodings, same=False))
    assert len(impostor) > 500
    false_accepts = [(a, b, round(d, 3)) for a, b, d in impostor if d <= DEFAULT]
    assert false_accepts == []
    assert min(d for _, _, d in impostor) > DEFAULT + 0.2


def test_each_capture_is_identified_as_its_person_in_a_gallery_of_three(face_pipeline, sample_encodings):
    """Obama enrolled from two photos, as a farmer should be (one photo leaves 5% of
    the other photos' changed copies beyond the default threshold, above)."""
    gallery = gallery_of(face_pipeline, {"obama": ["obama2.jpg", "obama.jpg"], "biden": ["biden.jpg"],
                                         "collins": ["astronaut.png"]})
    matcher = Matcher(gallery)
    wrong = []
    for sample, encoding, _ in sample_encodings:
        result = matcher.identify(encoding)
        if result.subject != sample.person:
            wrong.append((sample.label, result))
    assert wrong == []


def test_verification_accepts_the_card_holder_and_refuses_someone_else(face_pipeline):
    matcher = Matcher(gallery_of(face_pipeline, {"obama": ["obama.jpg"], "biden": ["biden.jpg"]}))
    probe = encode(face_pipeline, "obama3.jpg")
    ok = matcher.verify("obama", probe)
    assert ok.match and ok.reason is None and ok.distance < DEFAULT
    refused = matcher.verify("biden", probe)
    assert not refused.match and refused.reason == errors.MISMATCH and refused.distance > DEFAULT
    missing = matcher.verify("nobody", probe)
    assert not missing.match and missing.reason == errors.NOT_ENROLLED


def test_one_person_under_two_subject_ids_is_refused_as_ambiguous(face_pipeline):
    # The same man enrolled twice (two cards, one face): identification must not
    # pick either; the clerk asks for the card.
    matcher = Matcher(gallery_of(face_pipeline, {"card-A": ["obama2.jpg"], "card-B": ["obama3.jpg"]}))
    result = matcher.identify(encode(face_pipeline, "obama.jpg"))
    assert result.subject is None and result.reason == errors.AMBIGUOUS
    assert result.distance < DEFAULT and result.margin < MatchConfig().min_margin
    assert result.candidate in ("card-A", "card-B")


def test_margin_is_measured_to_the_next_subject_not_the_next_photo_of_the_same_one(face_pipeline):
    matcher = Matcher(gallery_of(face_pipeline, {
        "obama": ["obama.jpg", "obama2.jpg", "obama3.jpg"], "biden": ["biden.jpg"]}))
    result = matcher.identify(encode(face_pipeline, "obama_partial_face.jpg"))
    assert result.subject == "obama"
    assert result.margin > 0.3  # to Biden, not to another photo of Obama


def test_a_stranger_is_not_identified(face_pipeline):
    matcher = Matcher(gallery_of(face_pipeline, {"obama": ["obama.jpg"], "collins": ["astronaut.png"]}))
    result = matcher.identify(encode(face_pipeline, "biden.jpg"))
    assert result.subject is None and result.reason == errors.NO_MATCH and result.distance > DEFAULT


def test_identification_over_many_subjects_agrees_with_brute_force():
    import face_recognition

    rng = np.random.default_rng(7)
    counts = rng.integers(1, 4, 5000)
    emb = rng.normal(0, 0.09, (int(counts.sum()), 128)).astype(np.float32)
    gallery = Gallery(["s%05d" % i for i in range(len(counts))], counts, emb)
    matcher = Matcher(gallery, MatchConfig(max_distance=10, min_margin=0))
    for _ in range(20):
        row = int(rng.integers(len(emb)))
        query = emb[row] + rng.normal(0, 0.02, 128).astype(np.float32)
        d = face_recognition.face_distance(emb.astype(np.float64), query.astype(np.float64))
        per_subject = np.minimum.reduceat(d, np.concatenate([[0], np.cumsum(counts)[:-1]]))
        order = np.argsort(per_subject)
        result = matcher.identify(query)
        assert result.subject == gallery.subjects[order[0]]
        assert result.distance == pytest.approx(per_subject[order[0]], abs=1e-4)
        assert result.margin == pytest.approx(per_subject[order[1]] - per_subject[order[0]], abs=1e-4)


def test_an_empty_gallery_refuses_and_a_single_subject_has_no_margin(face_pipeline):
    probe = encode(face_pipeline, "obama.jpg")
    assert Matcher(Gallery()).identify(probe).reason == errors.GALLERY_EMPTY
    single = Matcher(gallery_of(face_pipeline, {"obama": ["obama2.jpg"]})).identify(probe)
    assert single.subject == "obama" and single.margin is None


def test_a_query_of_the_wrong_length_is_refused():
    gallery = Gallery(["a"], [1], np.zeros((1, 128), np.float32))
    with pytest.raises(ValueError):
        Matcher(gallery).identify(np.zeros(64, np.float32))


def test_nearest_others_finds_a_second_enrollment_of_the_same_face(face_pipeline):
    matcher = Matcher(gallery_of(face_pipeline, {"card-A": ["obama2.jpg"], "biden": ["biden.jpg"]}))
    similar = matcher.nearest_others(encode(face_pipeline, "obama3.jpg"), exclude="card-B")
    assert [name for name, _ in similar] == ["card-A"]
