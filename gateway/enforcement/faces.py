"""Enrolled faces at the gateway: subject -> encodings, and the per-shop gallery
built from them for config sync.

Only encodings are kept, never photos (ARCHITECTURE: personal data minimised).
They are computed where the photo is taken, by the same capture checks and
model the counter uses (`python -m firmware face encode`, docs/face.md
"Enrollment"), and imported here (`python -m gateway faces import`); the
gateway never imports the terminal's code, the two meet on a file format.

Each shop's terminals get the encodings of the subjects the `subjects` section
carries for them (the shop's town plus the terminal's recent buyers) as the
`gallery` section (protocols/facegallery.py). Its version is derived from what
it holds, the (subject, face revision) pairs, like the `shop` section's: a new
enrollment, a removal, or a subject moving in or out of the selection gives a
new version, and terminals of one town share one version (and one cached
text). An empty gallery has version 0 and is pushed too, so a terminal whose
last enrolled subject was removed stops matching it.

Rows are stored as the float32 little-endian bytes the payload carries, so a
gallery is built by joining blobs, without numpy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from datetime import datetime, timezone

from gateway.store import faces as faces_store
from gateway.store import registry as registry_store
from gateway.store import transaction
from protocols import facegallery, schema

log = logging.getLogger(__name__)


SIMILAR_WITHIN = 0.5   # docs/face.md: max_distance; two subjects this close may be one person


class FacesError(ValueError):
    """An import that cannot be used; nothing was written."""



# ---------------------------------------------------------------- import

def parse_import(text: str, source: str) -> list[tuple[str, bytes]]:
    """JSON lines `{"subject", "model", "encodings": [[128 numbers], ...]}` (what
    `python -m firmware face encode` prints) -> [(subject, float32 rows)].
    Checked whole: one bad line refuses the file."""
    out: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            item = json.loads(line)
        except ValueError as err:
            raise FacesError(f"{where}: not JSON: {err}") from None
        if not isinstance(item, dict):
            raise FacesError(f"{where}: not an object")
        subject = item.get("subject")
        if not isinstance(subject, str) or not schema.is_id(subject):
            raise FacesError(f"{where}: subject must be a subject id, got {subject!r}")
        model = item.get("model", facegallery.MODEL)
        if model != facegallery.MODEL:
            raise FacesError(f"{where}: encodings from model {model!r}, terminals use {facegallery.MODEL!r}")
        rows = item.get("encodings")
        if not isinstance(rows, list) or not rows:
            reason = item.get("reason")
            raise FacesError(f"{where}: no encodings for {subject}" + (f" (enrollment refused: {reason})"
                                                                        if reason else ""))
        if len(rows) > facegallery.MAX_ROWS_PER_SUBJECT:
            raise FacesError(f"{where}: {len(rows)} encodings, at most {facegallery.MAX_ROWS_PER_SUBJECT}")
        for row in rows:
            if (not isinstance(row, list) or len(row) != facegallery.DIM
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                               and abs(v) < 16 for v in row)):
                raise FacesError(f"{where}: an encoding must be {facegallery.DIM} finite numbers")
        if subject in out:
            raise FacesError(f"{where}: {subject} appears twice")
        out[subject] = facegallery.pack_rows(rows)
    if not out:
        raise FacesError(f"{source}: no faces")
    return list(out.items())


def import_faces(conn, entries: list[tuple[str, bytes]], now_ms: int) -> int:
    """Replace the encodings of each subject (registered ones only); returns the
    faces revision."""
    known = registry_store.known_subjects(conn, [s for s, _ in entries])
    unknown = [s for s, _ in entries if s not in known]
    if unknown:
        raise FacesError("not in the registry (import the subjects first): " + ", ".join(unknown[:10]))
    with transaction(conn):
        rev = faces_store.bump_rev(conn)
        for subject, rows in entries:
            faces_store.put(conn, subject, facegallery.MODEL, len(rows) // facegallery.ROW_BYTES, rows, rev, now_ms)
    log.info("faces imported subjects=%d rev=%d", len(entries), rev)
    return rev


def remove(conn, subjects: list[str]) -> int:
    """Forget subjects' encodings (the next gallery of their shops drops them);
    returns how many were enrolled."""
    with transaction(conn):
        gone = faces_store.delete(conn, subjects)
        if gone:
            faces_store.bump_rev(conn)
    return gone


def similar(conn, entries: list[tuple[str, bytes]],
            within: float = SIMILAR_WITHIN) -> list[dict]:
    """Other enrolled subjects whose face lies within `within` of a new one:
    one farmer holding two subject cards is how a quota gets doubled, so an
    import reports them (it does not refuse: twins exist)."""
    import numpy as np

    new = {s for s, _ in entries}
    others, owners = [], []
    for subject, rows in faces_store.all_encodings(conn):
        if subject not in new:
            block = np.frombuffer(rows, dtype="<f4").reshape(-1, facegallery.DIM)
            others.append(block)
            owners += [subject] * len(block)
    for subject, rows in entries:
        others.append(np.frombuffer(rows, dtype="<f4").reshape(-1, facegallery.DIM))
        owners += [subject] * (len(rows) // facegallery.ROW_BYTES)
    if not others:
        return []
    gallery = np.concatenate(others)
    found: dict[tuple[str, str], float] = {}
    for subject, rows in entries:
        d = np.full(len(gallery), np.inf, np.float32)
        for q in np.frombuffer(rows, dtype="<f4").reshape(-1, facegallery.DIM):
            d = np.minimum(d, np.linalg.norm(gallery - q, axis=1))
        for row in np.flatnonzero(d <= within):
            other = owners[int(row)]
            if other != subject:
                pair = tuple(sorted((subject, other)))
                found[pair] = min(found.get(pair, math.inf), float(d[row]))
    return [{"subjects": list(pair), "distance": round(dist, 4)} for pair, dist in sorted(found.items())]


# ---------------------------------------------------------------- galleries

def gallery_version(conn, scope: list[str]) -> int:
    """The version of the gallery of these subjects: 0 when none is enrolled,
    else 48 bits of SHA-256 over the (subject, revision) pairs it holds."""
    pairs = faces_store.revisions(conn, scope)
    if not pairs:
        return 0
    text = "\n".join(f"{subject}\t{rev}" for subject, rev in pairs)
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:12], 16) or 1


def gallery_payload(conn, scope: list[str]) -> bytes:
    """The payload (protocols/facegallery.py) of the enrolled subjects among
    `scope`, by subject id; `created` is the newest enrollment, so the same
    version always gives the same bytes."""
    entries, newest = [], 0
    for subject, rows, updated in faces_store.encodings_of(conn, scope):
        entries.append((subject, rows))
        newest = max(newest, updated)
    created = datetime.fromtimestamp(newest / 1000, timezone.utc).isoformat(timespec="seconds") if newest else ""
    return facegallery.build(entries, created)
