"""The face check the agent calls at the counter: frames in, a decision with a
reason code out.

It ties the capture pipeline, the matcher and the liveness check together so the
agent (and the terminal UI through it) deal with one object and one result shape.
A poor capture is not an exception here but an answer with a reason, because
the clerk's screen shows it and the ledger records it the same way as a mismatch.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass

from firmware.face import errors, liveness
from firmware.face.errors import PoorCapture
from firmware.face.liveness import LivenessConfig, LivenessPolicy, LivenessResult
from firmware.face.matching import Identification, MatchConfig, Matcher, Verification

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveIdentification:
    identification: Identification
    liveness: LivenessResult | None  # None when the product class needs no check

    @property
    def subject(self) -> str | None:
        if self.liveness is not None and not self.liveness.live:
            return None
        return self.identification.subject

    @property
    def reason(self) -> str | None:
        if self.liveness is not None and not self.liveness.live:
            return self.liveness.reason
        return self.identification.reason


class FaceService:
    """`pipeline` None: the real one (firmware.face.pipeline), loaded at the first
    frame, so an agent that never sees a face never pays dlib's second of start-up.

    The gallery can be replaced while the service runs (`set_gallery`, called when
    config sync stores a new one): the matcher is rebuilt beside the old one and
    swapped in one assignment, and each call works on the matcher it started with."""

    def __init__(self, pipeline, gallery, match: MatchConfig | None = None,
                 policy: LivenessPolicy | None = None, live: LivenessConfig | None = None):
        self._pipeline = pipeline
        self._pipeline_lock = threading.Lock()
        self.match = match or MatchConfig()
        self.matcher = Matcher(gallery, self.match)
        self.policy = policy or LivenessPolicy()
        self.live = live or LivenessConfig()

    @property
    def pipeline(self):
        if self._pipeline is None:
            with self._pipeline_lock:
                if self._pipeline is None:
                    from firmware.face.pipeline import FacePipeline
                    self._pipeline = FacePipeline()
        return self._pipeline

    @property
    def gallery(self):
        return self.matcher.gallery

    def set_gallery(self, gallery) -> None:
        """Match against `gallery` from the next call on."""
        self.matcher = Matcher(gallery, self.match)
        log.info("face service gallery replaced subjects=%d", len(gallery))

    def identify(self, frame) -> Identification:
        """1:N on one frame (an RGB array)."""
        matcher = self.matcher
        try:
            capture = self.pipeline.capture(frame)
        except PoorCapture as exc:
            return Identification(None, None, None, exc.code)
        return matcher.identify(capture.encoding)

    def verify(self, subject: str, frame) -> Verification:
        """1:1 against the card holder on one frame."""
        matcher = self.matcher
        if matcher.gallery.index_of(subject) is None:
            return Verification(subject, False, None, errors.NOT_ENROLLED)
        try:
            capture = self.pipeline.capture(frame)
        except PoorCapture as exc:
            return Verification(subject, False, None, exc.code)
        return matcher.verify(subject, capture.encoding)

    def identify_burst(self, frames, product_class: str) -> LiveIdentification:
        """Identify from a burst of consecutive frames, checking liveness when the
        product class requires it. The sharpest usable frame is matched; refused
        frames are skipped, and when none is usable the commonest reason is given."""
        need_live = self.policy.required_for(product_class)
        matcher = self.matcher
        captures, refusals = [], Counter()
        for frame in frames:
            try:
                captures.append(self.pipeline.capture(frame, landmarks=need_live))
            except PoorCapture as exc:
                refusals[exc.code] += 1
        if not captures:
            code = refusals.most_common(1)[0][0] if refusals else errors.NO_FACE
            return LiveIdentification(Identification(None, None, None, code), None)
        best = max(captures, key=lambda c: c.sharpness)
        result = matcher.identify(best.encoding)
        checked = None
        if need_live:
            checked = liveness.check([(c.landmarks, c.encoding) for c in captures], self.live)
        outcome = LiveIdentification(result, checked)
        log.info("face burst product_class=%s frames=%d usable=%d subject=%s reason=%s",
                 product_class, len(frames), len(captures), outcome.subject, outcome.reason)
        return outcome
