"""From a camera frame or a photo to one trustworthy 128-d encoding, or a reason.

Detection runs on a downscaled copy (longest side `detect_size`, upsampled once by
dlib's HOG detector), because the HOG pyramid is the expensive part and its cost
grows with the pixel count: on a 640x480 frame, 320 pixels upsampled once finds
faces down to about 80 camera pixels in ~30 ms on the build machine. Only when that
finds nothing is a second, slower pass run at twice the size, so a refusal can say
"step closer" instead of "no face", and large enrollment photos with a smallish
face still work. The chosen face is then encoded from the full-resolution frame,
where the 150x150 aligned chip the encoder needs has the most detail.

A frame is refused, with a code the clerk can act on, when it has no face, several
faces of similar size, a face under `min_face_px`, a face too dark or too blurred
(see `quality`). Detections scoring below `min_detection_score` are ignored: on the
test photos, false detections (a round mission patch on a space suit) scored <= 0.17
and real faces >= 0.55, even when rotated, darkened or half cut off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

from firmware.face import errors, quality
from firmware.face.errors import PoorCapture

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptureConfig:
    """Capture thresholds; the defaults and their measurements are in docs/face.md."""

    detect_size: int = 320
    upsample: int = 1
    min_detection_score: float = 0.3
    min_face_px: int = 80
    # A second face at least this fraction of the largest one's height competes
    # with it; smaller faces are people further back in the queue.
    competing_face_ratio: float = 0.5
    # Below these the encoding of a face drifts by more than ~0.2 of the 0.5
    # distance budget (measured sweep in docs/face.md); every genuine test capture
    # has luma >= 69 and sharpness >= 0.84.
    min_brightness: float = 40.0
    min_sharpness: float = 0.6
    num_jitters: int = 1


@dataclass(frozen=True)
class Detection:
    box: tuple[int, int, int, int]  # (top, right, bottom, left) in full-resolution pixels
    score: float

    @property
    def height(self) -> int:
        return self.box[2] - self.box[0]


@dataclass(frozen=True)
class FaceCapture:
    """One usable face: its encoding and what was measured on the way."""

    encoding: np.ndarray  # float32, shape (128,)
    box: tuple[int, int, int, int]
    score: float
    brightness: float
    sharpness: float
    landmarks: dict = field(default_factory=dict)  # 68-point groups when asked for


def as_rgb(image: np.ndarray) -> np.ndarray:
    """A C-contiguous RGB uint8 array, as dlib insists on."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError("expected an 8-bit image, got %s" % image.dtype)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2RGB)
    elif image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("expected an RGB image, got shape %s" % (image.shape,))
    return np.ascontiguousarray(image)


class FacePipeline:
    """Detect, check and encode faces. Loads dlib's models once per process."""

    def __init__(self, config: CaptureConfig | None = None):
        import dlib
        import face_recognition  # noqa: F401  (loads the landmark and encoder models)

        self.config = config or CaptureConfig()
        self._detector = dlib.get_frontal_face_detector()

    # ---- detection -------------------------------------------------------------

    def detect(self, rgb: np.ndarray, size: int | None = None) -> list[Detection]:
        """Faces found on a copy whose longest side is `size`, boxes in full-resolution pixels."""
        size = size or self.config.detect_size
        h, w = rgb.shape[:2]
        scale = min(1.0, size / max(h, w))
        small = rgb if scale == 1.0 else cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        rects, scores, _ = self._detector.run(np.ascontiguousarray(small), self.config.upsample, 0.0)
        found = []
        for rect, score in zip(rects, scores, strict=True):
            if score < self.config.min_detection_score:
                continue
            box = (max(0, round(rect.top() / scale)), min(w, round(rect.right() / scale)),
                   min(h, round(rect.bottom() / scale)), max(0, round(rect.left() / scale)))
            found.append(Detection(box, float(score)))
        found.sort(key=lambda d: d.height, reverse=True)
        return found

    def choose(self, rgb: np.ndarray) -> Detection:
        """The one face to encode, or PoorCapture saying why there is none."""
        cfg = self.config
        faces = self.detect(rgb)
        if not faces:
            faces = self.detect(rgb, cfg.detect_size * 2)
        if not faces:
            frame_light = quality.brightness(quality.luma(rgb))
            if frame_light < cfg.min_brightness:
                raise PoorCapture(errors.TOO_DARK, "no face, frame brightness %.0f" % frame_light)
            raise PoorCapture(errors.NO_FACE)
        best = faces[0]
        rivals = [f for f in faces[1:] if f.height >= cfg.competing_face_ratio * best.height]
        if rivals:
            raise PoorCapture(errors.SEVERAL_FACES, "%d faces of similar size" % (1 + len(rivals)))
        if best.height < cfg.min_face_px:
            raise PoorCapture(errors.TOO_SMALL, "face %d px, minimum %d" % (best.height, cfg.min_face_px))
        return best

    # ---- the whole capture -----------------------------------------------------

    def capture(self, image: np.ndarray, landmarks: bool = False) -> FaceCapture:
        """Encode the one face of a frame; raise PoorCapture with a reason otherwise."""
        import face_recognition

        cfg = self.config
        rgb = as_rgb(image)
        face = self.choose(rgb)
        face_gray = quality.crop(quality.luma(rgb), face.box)
        light = quality.brightness(face_gray)
        if light < cfg.min_brightness:
            raise PoorCapture(errors.TOO_DARK, "face brightness %.0f, minimum %.0f" % (light, cfg.min_brightness))
        sharp = quality.sharpness(face_gray)
        if sharp < cfg.min_sharpness:
            raise PoorCapture(errors.TOO_BLURRED, "face sharpness %.2f, minimum %.2f" % (sharp, cfg.min_sharpness))
        encoding = face_recognition.face_encodings(rgb, [face.box], num_jitters=cfg.num_jitters)[0]
        marks = face_recognition.face_landmarks(rgb, [face.box])[0] if landmarks else {}
        log.debug("face captured box=%s score=%.2f brightness=%.0f sharpness=%.2f",
                  face.box, face.score, light, sharp)
        return FaceCapture(np.asarray(encoding, dtype=np.float32), face.box, face.score, light, sharp, marks)
