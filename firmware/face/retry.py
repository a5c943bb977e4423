"""Keep trying on live frames for a few seconds before a face check gives up.

One frame is a poor basis for turning a farmer away: the face was half turned,
he had not stepped up yet, the light flickered. So when a frame is refused for
something the farmer can fix (too far, too dark, not facing the camera, blurred,
someone else in view) the counter says what to do (shown and spoken, once per
new reason) and tries the next frames from the camera, until the face is usable
or `seconds` have passed. Only then is the last refusal the answer. Refusals the
farmer cannot fix by standing differently (no match, ambiguous, not live, no
gallery) are answered at once: more frames of the same face would only repeat
them, and retrying a stranger is how a near match gets lucky.

Time is passed in (`monotonic`), so a test drives the deadline exactly.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from firmware.face import errors

log = logging.getLogger(__name__)

DEFAULT_SECONDS = 4.0

# The farmer can fix these by standing differently; the order is the order of the
# prompts in docs/face.md.
FIXABLE = frozenset(errors.POOR_CAPTURE)


def keep_trying(attempt: Callable[[], object], on_hint: Callable[[str], None], seconds: float = DEFAULT_SECONDS,
                monotonic: Callable[[], float] = time.monotonic, code_of=lambda exc: getattr(exc, "code", None),
                retry_on: tuple = (Exception,)):
    """Call `attempt()` (one try on the newest frames) until it returns, or raises
    a refusal that is not FIXABLE, or `seconds` pass; `on_hint(code)` is called
    whenever a fixable refusal differs from the one before, so the prompt changes
    as the farmer moves and is not repeated while nothing changes. At the deadline
    the last refusal is raised."""
    deadline = monotonic() + seconds
    shown = None
    tries = 0
    while True:
        tries += 1
        try:
            return attempt()
        except retry_on as exc:
            code = code_of(exc)
            if code not in FIXABLE or monotonic() >= deadline:
                log.info("face check gave up tries=%d code=%s", tries, code)
                raise
            if code != shown:
                shown = code
                on_hint(code)
