"""Where the device key for the face gallery comes from.

On a provisioned terminal the key is written once at provisioning to
/etc/agri/face-gallery.key (the agent's user, 0600; firmware/deploy/README.md) and
the agent seals the gallery config sync delivers under it (firmware/face/synced.py,
which also says where the agent looks for it). On a developer machine there is
no provisioning, so the
default is a per-user file that `enroll` creates on first use; that keeps
`python -m firmware face enroll ...` then `... identify ...` working with no
options while still never writing a gallery in the clear.

Order: an explicit path (`--key-file`), then $AGRI_QUOTA_FACE_KEY_FILE, then
$XDG_CONFIG_HOME/agri-quota/face-gallery.key (~/.config/... when unset).
The file holds 64 hex digits (a trailing newline is fine) or 32 raw bytes.
It is made 0600, in a 0700 directory when that is made too (`firmware.files.private_directory`,
also used for the sealed gallery's).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

from firmware.face import errors
from firmware.face.errors import DeviceKeyError
from firmware.files import private_directory

log = logging.getLogger(__name__)

ENV = "AGRI_QUOTA_FACE_KEY_FILE"
KEY_LEN = 32


def default_path(environ=os.environ) -> Path:
    if environ.get(ENV):
        return Path(environ[ENV])
    config = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(config) / "agri-quota" / "face-gallery.key"


def parse(data: bytes, source: str = "key") -> bytes:
    text = data.strip()
    if len(text) == 2 * KEY_LEN:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    if len(data) == KEY_LEN:
        return bytes(data)
    raise DeviceKeyError(errors.KEY_INVALID, "%s must hold 64 hex digits or 32 raw bytes" % source)


def read(path) -> bytes:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DeviceKeyError(errors.KEY_INVALID, "no device key at %s (give --key-file or set %s)"
                             % (path, ENV)) from None
    except OSError as exc:
        raise DeviceKeyError(errors.KEY_INVALID, "cannot read device key %s: %s" % (path, exc.strerror)) from None
    return parse(data, str(path))


def create(path, randbytes: Callable[[int], bytes] = os.urandom) -> bytes:
    """Write a new random key readable by its owner only; never overwrite one."""
    path = Path(path)
    private_directory(path.parent)
    key = randbytes(KEY_LEN)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key.hex() + "\n")
    log.warning("created a new face gallery device key path=%s", path)
    return key


def read_or_create(path, randbytes: Callable[[int], bytes] = os.urandom) -> bytes:
    path = Path(path)
    try:
        return create(path, randbytes)
    except FileExistsError:
        return read(path)
