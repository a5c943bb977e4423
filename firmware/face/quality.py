"""The quality gate: is this face bright and sharp enough to encode?

dlib's encoder returns a vector for almost anything the detector hands it, and a
vector from a very dark or smeared face lands somewhere unpredictable: it fails to
match its owner or, worse, drifts towards a stranger. So such captures are refused
with a reason the clerk can act on. Enrolment and identification go through this
one gate (`QualityGate.check`, called by `FacePipeline.capture` for both), so a
photo accepted at enrolment is accepted at the counter.

Both measures are taken on the face box only (a bright shop window behind a dark
face must not pass), and neither depends on the face's size:
- brightness: mean BT.601 luma of the face box, 0..255;
- sharpness: the face is resized to 100x100, about what the encoder's 150x150
  aligned chip holds of it, and for each axis the gradient energy is compared
  with the gradient energy of the same face smoothed by a Gaussian (sigma 1.5):
  var(d/dx face) / var(d/dx smoothed face). A sharp face loses most of its fine
  gradients to the smoothing (ratio 2.5-4); a face that is already blurred loses
  little (ratio towards 1). The weaker axis counts, because motion blur smears
  one direction only. A ratio of two energies of the same image does not change
  when the image is made brighter, darker or flatter (gain and offset cancel), so
  a darker copy of an accepted face stays accepted (issue 17: the measure before,
  a variance of second derivatives, was read at 64x64 and refused sharp faces in
  dim light, and upscaled small faces that the encoder handles well).

The thresholds come from sweeps over many faces (docs/face.md, "The quality
gate"): where the encoding starts to drift by more than the distance budget allows.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from firmware.face import errors
from firmware.face.errors import PoorCapture

NORMALISED_SIDE = 100
SMOOTHING_SIGMA = 1.5


def luma(rgb: np.ndarray) -> np.ndarray:
    """8-bit luma of an RGB image (or the image itself when already grey)."""
    if rgb.ndim == 2:
        return rgb
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def brightness(gray: np.ndarray) -> float:
    return float(gray.mean()) if gray.size else 0.0


def _gradient_energy(image: np.ndarray, dx: int, dy: int) -> float:
    return float(cv2.Sobel(image, cv2.CV_32F, dx, dy, ksize=3).var())


def sharpness(gray: np.ndarray) -> float:
    """Brightness- and contrast-free sharpness of a face crop (higher is sharper,
    1.0 is featureless); see the module doc."""
    if gray.shape[0] < 4 or gray.shape[1] < 4:
        return 0.0
    interp = cv2.INTER_AREA if min(gray.shape[:2]) >= NORMALISED_SIDE else cv2.INTER_CUBIC
    face = cv2.resize(gray, (NORMALISED_SIDE, NORMALISED_SIDE), interpolation=interp).astype(np.float32)
    smooth = cv2.GaussianBlur(face, (0, 0), SMOOTHING_SIGMA)
    ratios = []
    for dx, dy in ((1, 0), (0, 1)):
        coarse = _gradient_energy(smooth, dx, dy)
        if coarse < 1e-6:
            return 0.0
        ratios.append(_gradient_energy(face, dx, dy) / coarse)
    return float(min(ratios))


def crop(image: np.ndarray, box) -> np.ndarray:
    """The (top, right, bottom, left) box of an image, clipped to its edges."""
    top, right, bottom, left = box
    h, w = image.shape[:2]
    return image[max(0, top):min(h, bottom), max(0, left):min(w, right)]


@dataclass(frozen=True)
class Quality:
    brightness: float
    sharpness: float


@dataclass(frozen=True)
class QualityGate:
    """The one gate for enrolment and identification; defaults measured in docs/face.md."""

    min_brightness: float = 25.0
    min_sharpness: float = 1.3

    def measure(self, rgb: np.ndarray, box) -> Quality:
        face = crop(luma(rgb), box)
        return Quality(brightness(face), sharpness(face))

    def check(self, rgb: np.ndarray, box) -> Quality:
        """The face's measures, or PoorCapture (too dark, too blurred)."""
        q = self.measure(rgb, box)
        if q.brightness < self.min_brightness:
            raise PoorCapture(errors.TOO_DARK, "face brightness %.0f, minimum %.0f"
                              % (q.brightness, self.min_brightness))
        if q.sharpness < self.min_sharpness:
            raise PoorCapture(errors.TOO_BLURRED, "face sharpness %.2f, minimum %.2f"
                              % (q.sharpness, self.min_sharpness))
        return q
