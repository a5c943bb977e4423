"""Enrollment: from a subject's photos to encodings in the gallery.

The photos go through the same capture checks as the counter (a blurred or dark
enrollment photo would make every later visit fail) and are dropped once encoded:
only encodings reach the gallery. Two guards catch clerk mistakes that would
otherwise poison the gallery for months:
- the photos of one enrollment must show one person: every two of them must lie
  within `max_distance` of each other, else nothing is enrolled;
- a new subject that resembles someone already enrolled is reported
  (`similar`), because one farmer holding two subject cards is exactly how a quota
  gets doubled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from firmware.face import errors
from firmware.face.errors import PoorCapture
from firmware.face.gallery import Gallery
from firmware.face.matching import MatchConfig, Matcher

log = logging.getLogger(__name__)

MAX_ENCODINGS_PER_SUBJECT = 10


@dataclass
class EnrollmentReport:
    subject: str
    enrolled: int = 0
    total: int = 0
    rejected: list = field(default_factory=list)  # (label, reason code)
    similar: list = field(default_factory=list)  # (other subject, distance)
    reason: str | None = None

    def as_dict(self) -> dict:
        out = {
            "subject": self.subject,
            "enrolled": self.enrolled,
            "encodings": self.total,
            "rejected": [{"image": label, "reason": code} for label, code in self.rejected],
            "similar": [{"subject": name, "distance": round(d, 4)} for name, d in self.similar],
        }
        if self.reason:
            out["reason"] = self.reason
        return out


def enroll(pipeline, gallery: Gallery, subject: str, images, append: bool = False,
           config: MatchConfig | None = None, created: str | None = None) -> tuple[Gallery, EnrollmentReport]:
    """Encode labelled images [(label, rgb)] for `subject`; return the new gallery.

    Replaces the subject's encodings unless `append` (the newest
    MAX_ENCODINGS_PER_SUBJECT are kept). The gallery is unchanged when no photo is
    usable or the photos disagree.
    """
    config = config or MatchConfig()
    report = EnrollmentReport(subject)
    encodings = []
    for label, rgb in images:
        try:
            encodings.append(pipeline.capture(rgb).encoding)
        except PoorCapture as exc:
            log.info("enrollment photo refused subject=%s image=%s reason=%s", subject, label, exc.code)
            report.rejected.append((label, exc.code))
    if not encodings:
        report.reason = report.rejected[0][1] if report.rejected else errors.NO_FACE
        return gallery, report
    new = np.stack(encodings)
    centre = new.mean(axis=0)
    pairwise = np.linalg.norm(new[:, None, :] - new[None, :, :], axis=2)
    if float(pairwise.max()) > config.max_distance:
        report.reason = errors.ENROLL_INCONSISTENT
        return gallery, report
    report.similar = Matcher(gallery, config).nearest_others(centre, exclude=subject)
    if report.similar:
        log.warning("enrolled face resembles other subjects subject=%s similar=%s", subject, report.similar)
    if append:
        new = np.concatenate([gallery.encodings_of(subject), new])[-MAX_ENCODINGS_PER_SUBJECT:]
    else:
        new = new[-MAX_ENCODINGS_PER_SUBJECT:]
    report.enrolled = len(encodings)
    report.total = len(new)
    return gallery.with_subject(subject, new, created), report
