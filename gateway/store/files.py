"""Files at rest for the SQLite backend (docs/security.md, "Files and keys at
rest"): the database holds ID numbers, face encodings and every terminal's
record key, so it is 0600 from its first byte (SQLite gives its -wal and -shm
files the main file's mode), in a 0700 directory when the gateway creates that
directory; an existing one with looser permissions is tightened on open, with
a warning."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_directory(directory: str | Path) -> None:
    """`directory` and any missing parent created 0700; one that exists is
    left as it is (it may be /var/lib or a home directory)."""
    directory = Path(directory)
    missing = []
    while not directory.exists() and directory.parent != directory:
        missing.append(directory)
        directory = directory.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)  # whatever the umask


def private_file(path: str | Path, side_files: tuple[str, ...] = SQLITE_SIDE_FILES) -> None:
    """Make `path` 0600 from its first byte if it is missing (an empty file is
    an empty SQLite database), in a 0700 directory if that is missing too. An
    existing file, or one of its SQLite side files, readable by group or others
    is tightened to 0600 and logged: databases made before this check were 0644."""
    path = Path(path)
    private_directory(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    for p in [path] + [Path(str(path) + suffix) for suffix in side_files]:
        try:
            mode = stat.S_IMODE(p.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            try:
                os.chmod(p, 0o600)
                log.warning("tightened file permissions path=%s from=%o to=600: it holds keys or personal data",
                            p, mode)
            except OSError as err:
                log.warning("file readable by others path=%s mode=%o, cannot tighten it: %s", p, mode, err)
