"""The shop's face gallery: subjects and their encodings, and its file format.

Only encodings are kept, never photos (ARCHITECTURE: personal data minimised). The
gateway builds the gallery for a shop (its town's subjects plus recent buyers) and
distributes it (config sync, `firmware/face/synced.py`); on the terminal it is
encrypted at rest with AES-256-GCM under the device key, so a stolen SD card
yields nothing usable. The format is specified in docs/face.md and the payload
in protocols/facegallery.py, shared with the gateway; in short:

    container  = magic "AQFACE" | version u8 (1) | flags u8 (bit 0: sealed)
                 [sealed: key id 8 bytes | nonce 12 bytes | AES-GCM(payload), tag last;
                  the 28 header bytes are the associated data]
    payload    = header length u32 LE | header JSON (UTF-8, space-padded so the
                 encodings start 16-byte aligned) | encodings float32 LE, rows x dim
    header     = {"model", "dim", "subjects": [...], "counts": [...], "created"}

Rows are grouped by subject, in `subjects` order, `counts[i]` rows each; keeping a
subject's rows contiguous lets matching mask a subject with one slice. Loading is a
decrypt, one JSON parse and a zero-copy `np.frombuffer`: about 50 ms for 50,000
subjects on the build machine (bench/bench_face.py), so the agent can reload a new
gallery between two customers.

The key id (8 bytes of SHA-256 over a label and the key) lets a wrong key be told
apart from a damaged file: "sealed for key 3f2a..., this device has 91c0..." is an
actionable message where AES-GCM alone only says "invalid tag".
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from firmware.face import errors
from firmware.face.errors import GalleryError
from firmware.files import private_directory
from protocols import facegallery

log = logging.getLogger(__name__)

MAGIC = b"AQFACE"
VERSION = 1
FLAG_SEALED = 0x01
KEY_ID_LEN = 8
NONCE_LEN = 12
SEALED_HEADER_LEN = len(MAGIC) + 2 + KEY_ID_LEN + NONCE_LEN  # 28
MODEL = facegallery.MODEL
DIM = facegallery.DIM


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"agri-quota face gallery key id\x00" + key).digest()[:KEY_ID_LEN]


@dataclass
class Gallery:
    """Subjects in order, each owning a contiguous run of rows of `embeddings`."""

    subjects: list[str] = field(default_factory=list)
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, DIM), np.float32))
    model: str = MODEL
    created: str = ""

    def __post_init__(self):
        self.counts = np.asarray(self.counts, dtype=np.int64)
        self.embeddings = np.asarray(self.embeddings, dtype=np.float32).reshape(-1, DIM)
        if len(self.subjects) != len(self.counts):
            raise GalleryError(errors.GALLERY_INVALID, "%d subjects but %d counts"
                               % (len(self.subjects), len(self.counts)))
        if int(self.counts.sum()) != len(self.embeddings):
            raise GalleryError(errors.GALLERY_INVALID, "counts add up to %d rows, found %d"
                               % (int(self.counts.sum()), len(self.embeddings)))
        if len(self.counts) and int(self.counts.min()) < 1:
            raise GalleryError(errors.GALLERY_INVALID, "a subject without encodings")
        self._stops = np.cumsum(self.counts)
        self._index = {name: i for i, name in enumerate(self.subjects)}
        if len(self._index) != len(self.subjects):
            raise GalleryError(errors.GALLERY_INVALID, "a subject appears twice")
        self.owner = np.repeat(np.arange(len(self.subjects), dtype=np.int32), self.counts)

    def __len__(self) -> int:
        return len(self.subjects)

    def index_of(self, subject: str) -> int | None:
        return self._index.get(subject)

    def span(self, index: int) -> tuple[int, int]:
        stop = int(self._stops[index])
        return stop - int(self.counts[index]), stop

    def encodings_of(self, subject: str) -> np.ndarray:
        index = self.index_of(subject)
        if index is None:
            return np.zeros((0, DIM), np.float32)
        start, stop = self.span(index)
        return self.embeddings[start:stop]

    def with_subject(self, subject: str, encodings, created: str | None = None) -> "Gallery":
        """A new gallery where `subject` has exactly `encodings` (appended if new)."""
        encodings = np.asarray(encodings, dtype=np.float32).reshape(-1, DIM)
        subjects, counts, blocks = [], [], []
        for i, name in enumerate(self.subjects):
            if name != subject:
                start, stop = self.span(i)
                subjects.append(name)
                counts.append(stop - start)
                blocks.append(self.embeddings[start:stop])
        if len(encodings):
            subjects.append(subject)
            counts.append(len(encodings))
            blocks.append(encodings)
        emb = np.concatenate(blocks) if blocks else np.zeros((0, DIM), np.float32)
        return Gallery(subjects, counts, emb, self.model, self.created if created is None else created)


# ---- payload ------------------------------------------------------------------------

def encode(gallery: Gallery) -> bytes:
    """The plaintext payload (what the gateway builds for a shop; the format is
    protocols/facegallery.py, shared with the gateway)."""
    head = facegallery.header(gallery.subjects, [int(c) for c in gallery.counts], gallery.created, gallery.model)
    return head + np.ascontiguousarray(gallery.embeddings, dtype="<f4").tobytes()


def decode(payload) -> Gallery:
    view = memoryview(payload)
    try:
        header, offset = facegallery.parse(view)
    except facegallery.FormatError as exc:
        raise GalleryError(errors.GALLERY_INVALID, str(exc)) from None
    emb = np.frombuffer(view[offset:], dtype="<f4").reshape(-1, DIM)
    return Gallery(header["subjects"], header["counts"], emb, header["model"], header.get("created", ""))


# ---- container ----------------------------------------------------------------------

def seal(payload: bytes, key: bytes, randbytes: Callable[[int], bytes] = os.urandom) -> bytes:
    """Encrypt a payload for one device key (a fresh random nonce per write)."""
    _check_key(key)
    header = MAGIC + bytes([VERSION, FLAG_SEALED]) + key_id(key) + randbytes(NONCE_LEN)
    return header + AESGCM(key).encrypt(header[-NONCE_LEN:], payload, header)


def plain(payload: bytes) -> bytes:
    """An unsealed container, for a gateway that encrypts in transit instead."""
    return MAGIC + bytes([VERSION, 0]) + payload


def unseal(blob: bytes, key: bytes | None, allow_plain: bool = False) -> bytes:
    """The payload of a container; a sealed one needs the key it was sealed for."""
    if blob[:len(MAGIC)] != MAGIC or len(blob) < len(MAGIC) + 2:
        raise GalleryError(errors.GALLERY_INVALID, "not a face gallery file")
    version, flags = blob[len(MAGIC)], blob[len(MAGIC) + 1]
    if version != VERSION:
        raise GalleryError(errors.GALLERY_INVALID, "gallery version %d, this terminal reads %d" % (version, VERSION))
    if not flags & FLAG_SEALED:
        if not allow_plain:
            raise GalleryError(errors.GALLERY_INVALID, "gallery is not encrypted; refusing to use it at rest")
        return memoryview(blob)[len(MAGIC) + 2:]
    if key is None:
        raise GalleryError(errors.GALLERY_WRONG_KEY, "gallery is encrypted and no device key was given")
    _check_key(key)
    header = blob[:SEALED_HEADER_LEN]
    if len(blob) < SEALED_HEADER_LEN + 16:
        raise GalleryError(errors.GALLERY_CORRUPT, "sealed gallery truncated")
    sealed_for = header[len(MAGIC) + 2:len(MAGIC) + 2 + KEY_ID_LEN]
    if sealed_for != key_id(key):
        raise GalleryError(errors.GALLERY_WRONG_KEY, "gallery was encrypted for key %s, this device key is %s"
                           % (sealed_for.hex(), key_id(key).hex()))
    try:
        return AESGCM(key).decrypt(header[-NONCE_LEN:], memoryview(blob)[SEALED_HEADER_LEN:], header)
    except InvalidTag:
        raise GalleryError(errors.GALLERY_CORRUPT, "authentication failed: file damaged or altered") from None


def _check_key(key: bytes) -> None:
    if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
        raise errors.DeviceKeyError(errors.KEY_INVALID, "device key must be 32 bytes (AES-256)")


# ---- files --------------------------------------------------------------------------

def load(path, key: bytes | None, allow_plain: bool = False) -> Gallery:
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise GalleryError(errors.GALLERY_INVALID, "cannot read %s: %s" % (path, exc.strerror)) from None
    gallery = decode(unseal(blob, key, allow_plain))
    log.info("gallery loaded path=%s subjects=%d rows=%d", path, len(gallery), len(gallery.embeddings))
    return gallery


def save(path, gallery: Gallery, key: bytes, randbytes: Callable[[int], bytes] = os.urandom) -> None:
    """Write sealed, atomically: a power cut leaves the old gallery or the new one."""
    save_payload(path, encode(gallery), key, randbytes)
    log.info("gallery saved path=%s subjects=%d rows=%d", path, len(gallery), len(gallery.embeddings))


def save_payload(path, payload: bytes, key: bytes, randbytes: Callable[[int], bytes] = os.urandom) -> None:
    """Seal a payload as it came (from the gateway, its digest intact) and write
    it atomically: temporary file, fsync, rename, fsync of the folder."""
    path = Path(path)
    blob = seal(payload, key, randbytes)
    private_directory(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)  # 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(blob)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        folder = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    except OSError:
        pass
    finally:
        os.close(folder)
