"""Where the quality gate's thresholds come from: sweeps of blur and light over
many faces, with the encoding's drift measured at each step.

For every base face (the 27 people of `face_hardset` plus the photos of
`face_images`), each sweep makes the face a little worse at a time and records the
quality measures the gate reads (luma, sharpness) and how far the encoding moved
from the unchanged face's ("drift", Euclidean). The gate should refuse where the
drift stops being small next to the matching threshold, and accept everything
before that. `bench/bench_face.py --calibrate` prints the tables in docs/face.md.

The encodings are made with the gate switched off (thresholds 0), so the sweep
sees what the gate would have let through.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tests.support import face_hardset as hs
from tests.support import face_images as fi


def _gaussian(rgb, box, level):
    sigma = level * (box[2] - box[0])
    return rgb if level == 0 else cv2.GaussianBlur(rgb, (0, 0), sigma)


def _motion(rgb, box, level):
    length = int(round(level * (box[1] - box[3]))) | 1
    if length <= 1:
        return rgb
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    return cv2.filter2D(rgb, -1, kernel, borderType=cv2.BORDER_REPLICATE)


def _low_res(rgb, box, face_px):
    factor = face_px / (box[2] - box[0])
    if factor >= 1:
        return rgb
    small = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_CUBIC)


def _small(rgb, box, face_px):
    """The whole frame smaller, so the face is `face_px` tall: a farmer further
    from the camera (not upscaled back, unlike `_low_res`)."""
    factor = face_px / (box[2] - box[0])
    if factor >= 1:
        return rgb
    return cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)


def _light(rgb, box, gain, seed=11):
    rng = np.random.default_rng(seed)
    out = rgb.astype(np.float32) * gain + rng.normal(0.0, 2.0, rgb.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


# name -> (change, levels, what a level means)
SWEEPS = {
    "gaussian blur": (_gaussian, (0.01, 0.02, 0.03, 0.04, 0.06, 0.08), "sigma, share of face height"),
    "motion blur": (_motion, (0.02, 0.04, 0.06, 0.08, 0.10, 0.14), "streak, share of face width"),
    "low resolution": (_low_res, (48, 36, 28, 22, 16), "face height in the camera, px"),
    "light": (_light, (0.5, 0.33, 0.2, 0.14, 0.1, 0.07), "gain, plus sensor noise"),
    "small face": (_small, (80, 62, 52, 43, 36), "face height in the frame, px"),
}
# The sweeps that blur the face (the sharpness table reads these only).
BLUR_SWEEPS = ("gaussian blur", "motion blur", "low resolution")


@dataclass(frozen=True)
class Point:
    face: str
    sweep: str
    level: float
    brightness: float
    sharpness: float
    drift: float | None  # None: no face found
    height: int | None = None  # of the face found


def bases() -> list[tuple[str, np.ndarray, tuple]]:
    """(label, image, face box) for every face the sweeps start from."""
    out = []
    for person, shots in hs.PEOPLE.items():
        for name, box in shots[:1]:
            image, face = hs.base_crop(name, box)
            out.append((person, image, face))
    for name, box in fi.FACE_BOXES.items():
        out.append((name, np.ascontiguousarray(fi.load(name)), box))
    return out


def sweep(pipeline, progress=None) -> list[Point]:
    """Every sweep over every base face; `pipeline` must have its gate and its
    minimum face size off."""
    from firmware.face.errors import PoorCapture

    points = []
    for label, image, _ in bases():
        try:
            origin = pipeline.capture(image)
        except PoorCapture:
            continue
        for name, (change, levels, _) in SWEEPS.items():
            for level in levels:
                changed = np.ascontiguousarray(change(image, origin.box, level))
                q = pipeline.config.gate.measure(changed, origin.box)
                height = None
                try:
                    got = pipeline.capture(changed)
                    q = pipeline.config.gate.measure(changed, got.box)
                    drift = float(np.linalg.norm(got.encoding - origin.encoding))
                    height = got.box[2] - got.box[0]
                except PoorCapture:
                    drift = None
                points.append(Point(label, name, level, q.brightness, q.sharpness, drift, height))
                if progress is not None:
                    progress()
    return points


def count() -> int:
    return len(bases()) * sum(len(levels) for _, levels, _ in SWEEPS.values())
