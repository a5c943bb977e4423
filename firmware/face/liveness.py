"""A basic liveness check over a short burst of frames: did the face blink, or did
the head turn or nod, between frames?

A printed photo or a phone photo held up to the camera keeps its eyes open and its
pose frozen, however the hand holding it shakes. All three measures are ratios of
landmark positions taken along the face's own eye axis, so moving a photo, turning
it in the image plane or bringing it closer does not change them:
- eye openness: eye height (the two lid-to-lid distances of dlib's six eye points,
  averaged over both eyes) over the height from the eye line down to the nose tip.
  The classic eye aspect ratio (Soukupova and Cech 2016) divides by the eye's
  width instead, and a photo rocked backwards by 30 degrees foreshortens the eyes
  vertically and drops that ratio to 0.69 of its value, a fake blink (measured on
  the test photos). The nose height shrinks with the eyes, so openness stays at
  0.86 there, while really shut eyes drop it to about 0.55. A blink is open, then
  below `closed_fraction` (0.7) of the burst's open level, then open again.
- pose: where the nose sits between the two jaw edges along the eye axis (yaw,
  0.5 = facing the camera) and how far below the eye line it sits relative to the
  chin (pitch). A head turn of about 12 degrees moves yaw by the 0.1 required.

The burst must also show one person throughout (encodings within `same_person`),
so a live accomplice's blink cannot be paired with a photo's identity.

What it does not catch (docs/face.md): a video replayed on a phone or tablet; a
photo swung through about +-45 degrees about its vertical axis (perspective moves
the nose against the jaw edges: yaw range 0.15, measured); cut-out eye holes with a
real blink behind them; masks. It raises the cost of the laziest attack only;
restricted-use products should still require the card too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from firmware.face import errors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LivenessConfig:
    min_frames: int = 5
    closed_fraction: float = 0.7  # openness below this fraction of the open level = eyes shut
    open_fraction: float = 0.9  # openness above this fraction of the open level = eyes open
    min_pose_change: float = 0.1  # yaw or pitch range over the burst (~12 degrees of turn)
    same_person: float = 0.5  # max encoding distance between frames of one burst


@dataclass(frozen=True)
class LivenessResult:
    live: bool
    blinked: bool
    moved: bool
    frames: int
    eye_min: float | None = None
    eye_open: float | None = None
    yaw_range: float | None = None
    pitch_range: float | None = None
    reason: str | None = None


class LivenessPolicy:
    """Which product classes need a liveness check, e.g. {"restricted": True}.

    Restricted-use pesticides are where a borrowed identity does harm, so they
    default to requiring it; normal fertilizer sales do not make the farmer wait.
    """

    DEFAULT = {"restricted": True, "normal": False}

    def __init__(self, required: dict | None = None):
        self.required = dict(self.DEFAULT if required is None else required)

    def required_for(self, product_class: str) -> bool:
        return bool(self.required.get(product_class, False))


def _pt(points) -> np.ndarray:
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)


def eye_height(eye) -> float:
    p = _pt(eye)
    return float((np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])) / 2.0)


def measures(landmarks: dict) -> tuple[float, float, float]:
    """(eye openness, yaw, pitch) of one frame's 68-point landmarks (face_recognition groups)."""
    left, right = _pt(landmarks["left_eye"]), _pt(landmarks["right_eye"])
    eye_l, eye_r = left.mean(axis=0), right.mean(axis=0)
    axis = eye_r - eye_l
    norm = np.linalg.norm(axis)
    if norm == 0:
        return 0.0, 0.5, 0.5
    u = axis / norm
    v = np.array([-u[1], u[0]])  # down the face
    eye_mid = (eye_l + eye_r) / 2.0
    nose_tip = _pt(landmarks["nose_tip"])
    nose_drop = float(v @ (nose_tip[len(nose_tip) // 2] - eye_mid))
    openness = (eye_height(left) + eye_height(right)) / 2.0 / nose_drop if nose_drop > 0 else 0.0
    chin = _pt(landmarks["chin"])
    nose = _pt(landmarks["nose_bridge"])[-1]
    jaw_l, jaw_r, chin_tip = chin[0], chin[-1], chin[len(chin) // 2]
    span = float(u @ (jaw_r - jaw_l))
    yaw = float(u @ (nose - jaw_l)) / span if span else 0.5
    chin_drop = float(v @ (chin_tip - eye_mid))
    pitch = float(v @ (nose - eye_mid)) / chin_drop if chin_drop else 0.5
    return openness, yaw, pitch


def _blinked(eyes: np.ndarray, cfg: LivenessConfig) -> bool:
    open_level = float(np.percentile(eyes, 90))
    seen_open = seen_closed = False
    for eye in eyes:
        if not seen_open:
            seen_open = eye >= cfg.open_fraction * open_level
        elif not seen_closed:
            seen_closed = eye <= cfg.closed_fraction * open_level
        elif eye >= cfg.open_fraction * open_level:
            return True
    return False


def check(frames, config: LivenessConfig | None = None) -> LivenessResult:
    """Decide on a burst of (landmarks, encoding) pairs from consecutive frames.

    Frames the capture refused are simply left out by the caller; too few usable
    frames is itself a refusal, since a photo flashed briefly should not pass.
    """
    cfg = config or LivenessConfig()
    frames = list(frames)
    if len(frames) < cfg.min_frames:
        return LivenessResult(False, False, False, len(frames), reason=errors.NOT_LIVE)
    encodings = np.stack([np.asarray(enc, dtype=np.float32) for _, enc in frames])
    if float(np.linalg.norm(encodings - encodings[0], axis=1).max()) > cfg.same_person:
        log.warning("liveness burst shows more than one person")
        return LivenessResult(False, False, False, len(frames), reason=errors.NOT_LIVE)
    m = np.array([measures(marks) for marks, _ in frames])
    eyes, yaws, pitches = m[:, 0], m[:, 1], m[:, 2]
    blinked = _blinked(eyes, cfg)
    yaw_range = float(yaws.max() - yaws.min())
    pitch_range = float(pitches.max() - pitches.min())
    moved = max(yaw_range, pitch_range) >= cfg.min_pose_change
    live = blinked or moved
    result = LivenessResult(live, blinked, moved, len(frames), float(eyes.min()), float(np.percentile(eyes, 90)),
                            yaw_range, pitch_range, None if live else errors.NOT_LIVE)
    log.info("liveness live=%s blinked=%s moved=%s eye_min=%.3f yaw_range=%.3f pitch_range=%.3f",
             live, blinked, moved, result.eye_min, yaw_range, pitch_range)
    return result
