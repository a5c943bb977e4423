"""The shop's face gallery as config sync delivers it: checked, sealed at rest
under the device key, and swapped into the running face service.

The gateway pushes the gallery as the `gallery` config section (the payload in
base64, protocols/facegallery.py). Before anything changes here the payload is
checked twice: by the protocol (digest, size, format, the announced numbers of
subjects and rows) and by decoding it as the matcher will use it. Only then is
it sealed with AES-256-GCM under the device key and written atomically, and
only after that does the face service match against it, from the next frame
on, with no restart. Anything that fails is refused with `config_invalid` and
the gallery in use stays.

The payload is sealed exactly as it arrived, so its SHA-256 still matches the
digest the config store keeps: at start-up a file that does not match (a
power cut between writing the file and recording its version) is still used,
but its version is not reported, so the gateway sends it again.

Where the device key comes from (`key_path`): `[face] key_file` in the agent's
TOML, else $AGRI_QUOTA_FACE_KEY_FILE (both must exist: a provisioned terminal's
key is written at provisioning and never invented here), else a key next to the
ledger created on first use (mode 0600), so a development terminal works with
no setup. A terminal without a usable key refuses gallery sections
(`face_key_invalid`) rather than keep encodings in the clear.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Callable

from firmware.face import devicekey, errors
from firmware.face import gallery as gallery_file
from firmware.face.errors import FaceError
from firmware.face.gallery import Gallery
from protocols import configsync, facegallery

log = logging.getLogger(__name__)


def device_key(configured: Path | None, fallback: Path, environ=os.environ) -> tuple[bytes | None, str | None]:
    """(key, None) or (None, why not): see the module docstring for the order."""
    try:
        if configured is not None:
            return devicekey.read(configured), None
        if environ.get(devicekey.ENV):
            return devicekey.read(environ[devicekey.ENV]), None
        return devicekey.read_or_create(fallback), None
    except FaceError as exc:
        log.error("no face gallery device key: %s", exc.detail)
        return None, exc.detail


class SyncedGallery:
    """Thread-safe: the MQTT thread stores a new gallery while the counter matches."""

    def __init__(self, path: str | Path, key: bytes | None, key_problem: str | None = None):
        self.path = Path(path)
        self._key = key
        self._key_problem = key_problem or "no device key"
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Gallery], None]] = []
        self.current = Gallery()
        self.digest: str | None = None   # SHA-256 of the payload in use

    def subscribe(self, listener: Callable[[Gallery], None]) -> None:
        """`listener(gallery)` after every change (the face service rebuilds its matcher)."""
        with self._lock:
            self._listeners.append(listener)

    def load(self) -> str | None:
        """Use the sealed file from the last sync (at start-up, also offline);
        returns its payload digest, or None when there is none that can be used."""
        if not self.path.exists():
            return None
        if self._key is None:
            log.warning("face gallery not loaded path=%s: %s", self.path, self._key_problem)
            return None
        try:
            payload = gallery_file.unseal(self.path.read_bytes(), self._key)
            loaded = gallery_file.decode(payload)
        except (OSError, FaceError) as exc:
            log.warning("face gallery not loaded path=%s: %s", self.path, exc)
            return None
        digest = hashlib.sha256(payload).hexdigest()
        self.use(loaded, digest)
        return digest

    def prepare(self, content: dict) -> tuple[bytes, Gallery]:
        """The checked payload of a section and the gallery it holds; raises
        configsync.Invalid (nothing changed)."""
        if self._key is None:
            raise configsync.Invalid(errors.KEY_INVALID, self._key_problem)
        try:
            payload = facegallery.payload_of(content)
            return payload, gallery_file.decode(payload)
        except (facegallery.FormatError, FaceError, KeyError, TypeError) as exc:
            raise configsync.Invalid("config_invalid", "gallery: %s" % exc) from None

    def store(self, payload: bytes) -> None:
        """Seal under the device key and replace the file atomically."""
        gallery_file.save_payload(self.path, payload, self._key)

    def use(self, gallery: Gallery, digest: str) -> None:
        with self._lock:
            self.current = gallery
            self.digest = digest
            listeners = list(self._listeners)
        log.info("face gallery in use subjects=%d rows=%d digest=%s", len(gallery), len(gallery.embeddings),
                 digest[:12])
        for listener in listeners:
            listener(gallery)
