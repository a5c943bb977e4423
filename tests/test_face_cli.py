"""`python -m firmware face ...` as a subprocess, exactly as the issue names it:
one JSON object on stdout, exit 0 whether or not a face matched, non-zero only
for bad usage (2) or unreadable input (1)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from firmware.face import errors
from tests.support import face_images as fi
from tests.support.face_images import face_images  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def run(env, *args, timeout=120):
    proc = subprocess.run([sys.executable, "-m", "firmware", "face", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return proc


def answer(proc) -> dict:
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def shop(tmp_path_factory, face_images):
    """A dev machine: its own config dir (the key is created there) and a gallery
    with two subjects enrolled through the CLI. Built once for the module and
    only read: a test that enrolls works on a copy (`own_copy`)."""
    home = tmp_path_factory.mktemp("face-cli")
    env = dict(os.environ, XDG_CONFIG_HOME=str(home / "config"), PYTHONPATH=str(ROOT))
    env.pop("AGRI_QUOTA_FACE_KEY_FILE", None)
    gallery = home / "shop.gallery"
    enrolled = {
        "330110-obama": answer(run(env, "enroll", "--gallery", gallery, "--subject", "330110-obama",
                                   "--image", fi.path("obama.jpg"), "--image", fi.path("obama2.jpg"))),
        "330110-biden": answer(run(env, "enroll", "--gallery", gallery, "--subject", "330110-biden",
                                   "--image", fi.path("biden.jpg"))),
    }
    return env, home, gallery, enrolled


def own_copy(shop, tmp_path):
    """The dev machine copied, config dir and key included, for a test that writes."""
    env, home, gallery, enrolled = shop
    mine = tmp_path / "home"
    shutil.copytree(home, mine)
    return dict(env, XDG_CONFIG_HOME=str(mine / "config")), mine, mine / gallery.name, enrolled


def test_enroll_prints_what_was_kept_and_writes_an_encrypted_gallery(shop):
    env, home, gallery, enrolled = shop
    assert enrolled["330110-obama"] == {"subject": "330110-obama", "enrolled": 2, "encodings": 2,
                                        "rejected": [], "similar": []}
    assert enrolled["330110-biden"]["enrolled"] == 1
    key = home / "config" / "agri-quota" / "face-gallery.key"
    assert key.exists() and oct(key.stat().st_mode & 0o777) == "0o600"
    blob = gallery.read_bytes()
    assert blob.startswith(b"AQFACE") and b"330110" not in blob


def test_identify_names_the_person_or_null_with_a_reason(shop):
    env, _, gallery, _ = shop
    found = answer(run(env, "identify", "--gallery", gallery, "--image", fi.path("obama3.jpg")))
    assert found["subject"] == "330110-obama" and found["distance"] < 0.5 and "reason" not in found
    stranger = answer(run(env, "identify", "--gallery", gallery, "--image", fi.path("astronaut.png")))
    assert stranger["subject"] is None and stranger["reason"] == errors.NO_MATCH and stranger["distance"] > 0.5
    nobody = answer(run(env, "identify", "--gallery", gallery, "--image", fi.path("coffee.png")))
    assert nobody == {"subject": None, "distance": None, "margin": None, "reason": errors.NO_FACE}


def test_verify_says_match_true_or_false(shop):
    env, _, gallery, _ = shop
    yes = answer(run(env, "verify", "--gallery", gallery, "--subject", "330110-obama",
                     "--image", fi.path("obama_partial_face.jpg")))
    assert yes["match"] is True and yes["subject"] == "330110-obama" and "reason" not in yes
    no = answer(run(env, "verify", "--gallery", gallery, "--subject", "330110-biden",
                    "--image", fi.path("obama3.jpg")))
    assert no["match"] is False and no["reason"] == errors.MISMATCH


def test_a_poor_enrollment_photo_enrolls_nothing_and_says_why(shop, tmp_path):
    env, _, gallery, _ = own_copy(shop, tmp_path)
    before = gallery.read_bytes()
    dark = tmp_path / "dark.png"
    from PIL import Image

    Image.fromarray(fi.too_dark()).save(dark)
    result = answer(run(env, "enroll", "--gallery", gallery, "--subject", "330110-x", "--image", dark))
    assert result["enrolled"] == 0 and result["reason"] == errors.TOO_DARK
    assert gallery.read_bytes() == before


def test_a_wrong_key_fails_clearly(shop, tmp_path):
    env, _, gallery, _ = shop
    other = tmp_path / "other.key"
    other.write_text("11" * 32 + "\n")
    proc = run(env, "identify", "--gallery", gallery, "--image", fi.path("obama3.jpg"), "--key-file", other)
    assert proc.returncode == 1 and proc.stdout == ""
    assert errors.GALLERY_WRONG_KEY in proc.stderr and "device" in proc.stderr


def test_unreadable_input_and_bad_usage_are_the_only_failures(shop, tmp_path):
    env, _, gallery, _ = shop
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not a photo")
    proc = run(env, "verify", "--gallery", gallery, "--subject", "330110-obama", "--image", not_image)
    assert proc.returncode == 1 and "cannot read image" in proc.stderr
    proc = run(env, "identify", "--gallery", tmp_path / "missing.gallery", "--image", fi.path("obama.jpg"))
    assert proc.returncode == 1 and "no gallery" in proc.stderr
    proc = run(env, "verify", "--gallery", gallery, "--image", fi.path("obama.jpg"))  # no --subject
    assert proc.returncode == 2 and "--subject" in proc.stderr


def test_encode_prints_the_encodings_for_the_gateway_and_writes_nothing(shop, tmp_path):
    env, home, gallery, enrolled = shop
    before = sorted(p.name for p in home.rglob("*"))
    out = answer(run(env, "encode", "--subject", "S0001", "--image", fi.path("obama.jpg"),
                     "--image", fi.path("obama2.jpg")))
    assert (out["subject"], out["enrolled"], out["rejected"]) == ("S0001", 2, [])
    assert out["model"] == "dlib_face_recognition_resnet_model_v1/5pt"
    assert len(out["encodings"]) == 2 and all(len(row) == 128 for row in out["encodings"])
    refused = answer(run(env, "encode", "--subject", "S0001", "--image", fi.path("obama.jpg"),
                         "--image", fi.path("biden.jpg")))  # two people: nothing to import
    assert refused["encodings"] == [] and refused["reason"] == errors.ENROLL_INCONSISTENT
    assert sorted(p.name for p in home.rglob("*")) == before  # no gallery, no key: only encodings on stdout
