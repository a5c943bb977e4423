"""Capture quality measures: is this face bright and sharp enough to encode?

dlib's encoder returns a vector for almost anything the detector hands it, and a
vector from a dark or smeared face lands somewhere unpredictable: it fails to
match its owner or, worse, drifts towards a stranger. So the pipeline refuses such
captures and tells the clerk why. Both measures are taken on the face box only,
because a bright shop window behind a dark face must not pass.

Measures are made scale- and contrast-free, so one threshold works for a 90-pixel
face on a 640x480 camera and a 300-pixel face in an enrollment photo:
- brightness: mean BT.601 luma of the face box, 0..255;
- sharpness: the face is resized to 64x64, standardised to zero mean and unit
  variance, and the weaker of the horizontal and vertical second derivatives is
  measured. Taking the weaker axis catches motion blur, which smears one
  direction only and leaves a plain Laplacian looking healthy.
"""

from __future__ import annotations

import cv2
import numpy as np

NORMALISED_SIDE = 64


def luma(rgb: np.ndarray) -> np.ndarray:
    """8-bit luma of an RGB image (or the image itself when already grey)."""
    if rgb.ndim == 2:
        return rgb
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def brightness(gray: np.ndarray) -> float:
    return float(gray.mean()) if gray.size else 0.0


def sharpness(gray: np.ndarray) -> float:
    """Contrast-free sharpness of a face crop (higher is sharper); see module doc."""
    if gray.shape[0] < 4 or gray.shape[1] < 4:
        return 0.0
    face = cv2.resize(gray, (NORMALISED_SIDE, NORMALISED_SIDE), interpolation=cv2.INTER_AREA)
    face = face.astype(np.float32)
    std = float(face.std())
    if std < 1e-3:
        return 0.0
    face = (face - face.mean()) / std
    dxx = cv2.Sobel(face, cv2.CV_32F, 2, 0, ksize=3)
    dyy = cv2.Sobel(face, cv2.CV_32F, 0, 2, ksize=3)
    return float(min(dxx.var(), dyy.var()))


def crop(image: np.ndarray, box) -> np.ndarray:
    """The (top, right, bottom, left) box of an image, clipped to its edges."""
    top, right, bottom, left = box
    h, w = image.shape[:2]
    return image[max(0, top):min(h, bottom), max(0, left):min(w, right)]
