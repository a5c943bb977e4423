"""The face check the agent calls at the counter: frames in, a decision with a
reason code out.

It ties the capture pipeline, the matcher and the liveness check together so the
agent (and the terminal UI through it) deal with one object and one result shape.
A poor capture is not an exception here but an answer with a reason, because
the clerk's screen shows it and the ledger records it the same way as a mismatch.
"""

from __future__ import annotations

import logging
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
    def __init__(self, pipeline, gallery, match: MatchConfig | None = None,
                 policy: LivenessPolicy | None = None, live: LivenessConfig | None = None):
        self.pipeline = pipeline
        self.matcher = Matcher(gallery, match)
        self.policy = policy or LivenessPolicy()
        self.live = live or LivenessConfig()

    def identify(self, frame) -> Identification:
        """1:N on one frame (an RGB array)."""
        try:
            capture = self.pipeline.capture(frame)
        except PoorCapture as exc:
            return Identification(None, None, None, exc.code)
        return self.matcher.identify(capture.encoding)

    def verify(self, subject: str, frame) -> Verification:
        """1:1 against the card holder on one frame."""
        if self.matcher.gallery.index_of(subject) is None:
            return Verification(subject, False, None, errors.NOT_ENROLLED)
        try:
            capture = self.pipeline.capture(frame)
        except PoorCapture as exc:
            return Verification(subject, False, None, exc.code)
        return self.matcher.verify(subject, capture.encoding)

    def identify_burst(self, frames, product_class: str) -> LiveIdentification:
        """Identify from a burst of consecutive frames, checking liveness when the
        product class requires it. The sharpest usable frame is matched; refused
        frames are skipped, and when none is usable the commonest reason is given."""
        need_live = self.policy.required_for(product_class)
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
        result = self.matcher.identify(best.encoding)
        checked = None
        if need_live:
            checked = liveness.check([(c.landmarks, c.encoding) for c in captures], self.live)
        outcome = LiveIdentification(result, checked)
        log.info("face burst product_class=%s frames=%d usable=%d subject=%s reason=%s",
                 product_class, len(frames), len(captures), outcome.subject, outcome.reason)
        return outcome
