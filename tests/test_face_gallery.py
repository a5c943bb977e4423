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


# ---- the gallery as config sync delivers it (firmware/face/synced.py) --------------

import base64  # noqa: E402
import hashlib  # noqa: E402

from firmware.configstore import ConfigStore  # noqa: E402
from firmware.face.synced import SyncedGallery, device_key  # noqa: E402
from protocols import configsync, facegallery  # noqa: E402


def section_of(g: gf.Gallery) -> dict:
    return facegallery.section(gf.encode(g))


def resigned(content: dict, payload: bytes) -> dict:
    """`content` carrying a (bad) payload with a matching size and digest: only
    the payload's format is wrong."""
    return dict(content, b64=base64.b64encode(payload).decode(), size=len(payload),
                digest=hashlib.sha256(payload).hexdigest())


def test_a_gallery_section_round_trips_through_the_protocol_check():
    g = random_gallery(20, per_subject=2)
    content = section_of(g)
    assert (content["subjects"], content["rows"]) == (20, 40)
    assert configsync.check_section("gallery", content) is content
    back = gf.decode(facegallery.payload_of(content))
    assert back.subjects == g.subjects and np.array_equal(back.embeddings, g.embeddings)


def _malformed():
    good = section_of(random_gallery(3))
    payload = facegallery.payload_of(good)
    other_model = random_gallery(3)
    other_model.model = "some-other-model"
    return {
        "digest of another payload": dict(good, digest="0" * 64),
        "size differs": dict(good, size=good["size"] + 1),
        "subject count differs": dict(good, subjects=4),
        "not base64": dict(good, b64="!!!"),
        "rows missing": resigned(good, payload[:-512]),
        "another model": resigned(good, gf.encode(other_model)),
        "header beyond payload": resigned(good, b"\xff\xff\x00\x00{}"),
        "a field missing": {k: v for k, v in good.items() if k != "rows"},
        "an extra field": dict(good, photo="x"),
    }


@pytest.mark.parametrize("case", sorted(_malformed()))
def test_a_malformed_gallery_section_is_refused_as_config_invalid(case):
    with pytest.raises(configsync.Invalid) as failed:
        configsync.check_section("gallery", _malformed()[case])
    assert failed.value.code == "config_invalid"


def test_a_synced_gallery_is_sealed_at_rest_and_used_again_after_a_restart(tmp_path):
    g = random_gallery(30, per_subject=2)
    synced = SyncedGallery(tmp_path / "t.gallery.aqf", KEY)
    seen = []
    synced.subscribe(seen.append)
    payload, prepared = synced.prepare(section_of(g))
    synced.store(payload)
    synced.use(prepared, "d" * 64)
    assert seen == [prepared] and synced.current.subjects == g.subjects
    blob = (tmp_path / "t.gallery.aqf").read_bytes()
    assert blob[:6] == b"AQFACE" and blob[7] == gf.FLAG_SEALED
    assert g.embeddings[:1].tobytes() not in blob and payload[:64] not in blob
    again = SyncedGallery(tmp_path / "t.gallery.aqf", KEY)  # the terminal restarted
    assert again.load() == hashlib.sha256(payload).hexdigest()
    assert np.array_equal(again.current.embeddings, g.embeddings)
    assert SyncedGallery(tmp_path / "t.gallery.aqf", OTHER_KEY).load() is None  # another device's key


def test_a_terminal_without_a_device_key_refuses_the_gallery_rather_than_keep_it_in_the_clear(tmp_path):
    key, problem = device_key(tmp_path / "missing.key", tmp_path / "fallback.key")
    assert key is None and "missing.key" in problem
    synced = SyncedGallery(tmp_path / "g.aqf", key, problem)
    with pytest.raises(configsync.Invalid) as failed:
        synced.prepare(section_of(random_gallery(2)))
    assert failed.value.code == errors.KEY_INVALID
    assert not (tmp_path / "g.aqf").exists()
    created, problem = device_key(None, tmp_path / "fallback.key", environ={})
    assert len(created) == 32 and problem is None
    assert oct((tmp_path / "fallback.key").stat().st_mode & 0o777) == "0o600"


def _store(tmp_path, key=KEY):
    synced = SyncedGallery(tmp_path / "t.gallery.aqf", key)
    return ConfigStore(tmp_path / "t.config.db", lambda: 1_700_000_000_000, gallery=synced), synced


def test_the_config_store_keeps_the_old_gallery_when_a_new_one_cannot_be_used(tmp_path, monkeypatch):
    store, synced = _store(tmp_path)
    first = random_gallery(5)
    store.apply_section("gallery", 7, section_of(first))
    before = (tmp_path / "t.gallery.aqf").read_bytes()
    bad = dict(section_of(random_gallery(6)), rows=99)  # passes the schema, not the payload check
    with pytest.raises(configsync.Invalid) as failed:
        store.apply_section("gallery", 8, bad)
    assert failed.value.code == "config_invalid"

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        store.apply_section("gallery", 9, section_of(random_gallery(7)))
    monkeypatch.undo()
    assert store.versions()["gallery"] == 7
    assert synced.current.subjects == first.subjects
    assert (tmp_path / "t.gallery.aqf").read_bytes() == before
    store.close()


def test_the_config_store_keeps_only_the_galleries_summary_in_the_clear(tmp_path):
    store, synced = _store(tmp_path)
    g = random_gallery(8)
    content = section_of(g)
    store.apply_section("gallery", 3, content)
    assert store.gallery() == facegallery.summary(content) and "b64" not in store.gallery()
    store.close()
    for path in tmp_path.iterdir():
        data = path.read_bytes()
        assert g.embeddings[:1].tobytes() not in data, path.name
        assert content["b64"][:40].encode() not in data, path.name
    store, synced = _store(tmp_path)  # restarted: version and gallery from disk
    assert store.versions()["gallery"] == 3 and synced.current.subjects == g.subjects
    store.close()


def test_a_gallery_file_that_does_not_match_its_version_is_used_but_asked_for_again(tmp_path):
    store, synced = _store(tmp_path)
    store.apply_section("gallery", 3, section_of(random_gallery(8)))
    store.close()
    newer = random_gallery(9, seed=2)  # a power cut after the file was replaced, before its row
    gf.save_payload(tmp_path / "t.gallery.aqf", gf.encode(newer), KEY)
    store, synced = _store(tmp_path)
    assert "gallery" not in store.versions()  # not reported: the gateway sends it again
    assert synced.current.subjects == newer.subjects
    store.close()
    (tmp_path / "t.gallery.aqf").write_bytes(b"AQFACE\x01\x01" + bytes(100))  # damaged
    store, synced = _store(tmp_path)
    assert "gallery" not in store.versions() and len(synced.current) == 0
    store.close()
