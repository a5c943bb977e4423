"""The gallery file: round-trips encrypted, a wrong key or an altered byte fails
with a clear reason, and 50,000 subjects load well under a second."""

import os
import time

import numpy as np
import pytest

from firmware.face import devicekey, errors
from firmware.face import gallery as gf
from firmware.face.errors import DeviceKeyError, GalleryError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def random_gallery(subjects: int, seed: int = 1, per_subject: int = 1) -> gf.Gallery:
    rng = np.random.default_rng(seed)
    counts = np.full(subjects, per_subject)
    emb = rng.normal(0, 0.09, (subjects * per_subject, 128)).astype(np.float32)
    return gf.Gallery(["330110%012d" % i for i in range(subjects)], counts, emb, created="2025-03-01T08:00:00+00:00")


def test_gallery_round_trips_encrypted(tmp_path):
    g = random_gallery(50, per_subject=3).with_subject("农户-张三", np.ones((2, 128), np.float32))
    path = tmp_path / "gallery.aqf"
    gf.save(path, g, KEY)
    blob = path.read_bytes()
    assert blob[:6] == b"AQFACE" and blob[7] == gf.FLAG_SEALED
    assert g.embeddings[:1].tobytes() not in blob  # no encoding in the clear
    assert "农户".encode() not in blob  # nor a subject id
    back = gf.load(path, KEY)
    assert back.subjects == g.subjects
    assert np.array_equal(back.counts, g.counts)
    assert np.array_equal(back.embeddings, g.embeddings)
    assert back.created == g.created
    assert np.array_equal(back.encodings_of("农户-张三"), np.ones((2, 128), np.float32))


def test_a_wrong_key_fails_with_a_clear_error(tmp_path):
    path = tmp_path / "gallery.aqf"
    gf.save(path, random_gallery(10), KEY)
    with pytest.raises(GalleryError) as failed:
        gf.load(path, OTHER_KEY)
    assert failed.value.code == errors.GALLERY_WRONG_KEY
    assert gf.key_id(KEY).hex() in str(failed.value) and gf.key_id(OTHER_KEY).hex() in str(failed.value)
    assert "device" in failed.value.text("en")


def test_an_altered_byte_is_detected_as_corruption_not_a_wrong_key(tmp_path):
    path = tmp_path / "gallery.aqf"
    gf.save(path, random_gallery(10), KEY)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(GalleryError) as failed:
        gf.load(path, KEY)
    assert failed.value.code == errors.GALLERY_CORRUPT


@pytest.mark.parametrize("blob, code", [
    (b"PK\x03\x04 not a gallery", errors.GALLERY_INVALID),
    (b"AQFACE\x02\x01" + bytes(60), errors.GALLERY_INVALID),  # a future version
    (b"AQFACE\x01\x01" + bytes(10), errors.GALLERY_CORRUPT),  # truncated
])
def test_files_that_are_not_a_usable_gallery_are_refused(tmp_path, blob, code):
    path = tmp_path / "g.aqf"
    path.write_bytes(blob)
    with pytest.raises(GalleryError) as failed:
        gf.load(path, KEY)
    assert failed.value.code == code


def test_a_plain_distribution_file_is_refused_at_rest_unless_asked_for(tmp_path):
    g = random_gallery(5)
    path = tmp_path / "from-gateway.aqf"
    path.write_bytes(gf.plain(gf.encode(g)))
    with pytest.raises(GalleryError) as failed:
        gf.load(path, KEY)
    assert failed.value.code == errors.GALLERY_INVALID
    assert gf.load(path, None, allow_plain=True).subjects == g.subjects


def test_encodings_from_another_model_are_refused():
    g = random_gallery(3)
    g.model = "some-other-model"
    with pytest.raises(GalleryError) as failed:
        gf.decode(gf.encode(g))
    assert failed.value.code == errors.GALLERY_INVALID and "model" in failed.value.detail


def test_inconsistent_contents_are_refused():
    with pytest.raises(GalleryError):
        gf.Gallery(["a", "b"], [1], np.zeros((1, 128), np.float32))
    with pytest.raises(GalleryError):
        gf.Gallery(["a", "a"], [1, 1], np.zeros((2, 128), np.float32))
    with pytest.raises(GalleryError):
        gf.Gallery(["a"], [2], np.zeros((1, 128), np.float32))


def test_the_same_gallery_sealed_twice_uses_fresh_nonces():
    payload = gf.encode(random_gallery(3))
    assert gf.seal(payload, KEY) != gf.seal(payload, KEY)
    fixed = lambda n: b"\x07" * n  # noqa: E731
    assert gf.seal(payload, KEY, fixed) == gf.seal(payload, KEY, fixed)


def test_a_failed_save_leaves_the_old_gallery_in_place(tmp_path, monkeypatch):
    path = tmp_path / "gallery.aqf"
    gf.save(path, random_gallery(4), KEY)
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        gf.save(path, random_gallery(8), KEY)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery.aqf"]


def test_fifty_thousand_subjects_load_well_under_a_second(tmp_path):
    path = tmp_path / "big.aqf"
    gf.save(path, random_gallery(50_000, per_subject=1), KEY)
    start = time.perf_counter()
    g = gf.load(path, KEY)
    elapsed = time.perf_counter() - start
    assert len(g) == 50_000
    assert elapsed < 0.5, "loading took %.3f s" % elapsed


# ---- device key ----------------------------------------------------------------------

def test_device_key_is_created_private_once_and_read_back(tmp_path):
    path = tmp_path / "cfg" / "face-gallery.key"
    key = devicekey.read_or_create(path, randbytes=lambda n: b"\xab" * n)
    assert key == b"\xab" * 32
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert devicekey.read_or_create(path, randbytes=lambda n: b"\xcd" * n) == key


@pytest.mark.parametrize("content, ok", [
    (("ab" * 32 + "\n").encode(), True),
    (b"\x01" * 32, True),
    (b"too short", False),
    (("zz" * 32).encode(), False),
])
def test_device_key_file_formats(tmp_path, content, ok):
    path = tmp_path / "k"
    path.write_bytes(content)
    if ok:
        assert len(devicekey.read(path)) == 32
    else:
        with pytest.raises(DeviceKeyError):
            devicekey.read(path)


def test_a_missing_device_key_names_where_it_was_looked_for(tmp_path):
    with pytest.raises(DeviceKeyError) as failed:
        devicekey.read(tmp_path / "nope.key")
    assert "nope.key" in str(failed.value) and devicekey.ENV in str(failed.value)


def test_default_key_path_follows_the_environment():
    assert devicekey.default_path({devicekey.ENV: "/etc/agri-quota/k"}).as_posix() == "/etc/agri-quota/k"
    assert devicekey.default_path({"XDG_CONFIG_HOME": "/x"}).as_posix() == "/x/agri-quota/face-gallery.key"
