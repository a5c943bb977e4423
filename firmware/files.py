"""Files the terminal keeps personal data or keys in (the ledger, the synced
config with the registry, the face gallery and its key): 0600, in 0700
directories when the agent makes them, whatever the umask. A shop's Pi may
have other accounts on it; nothing of a farmer's should be readable by them."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)


def private_directory(folder: str | os.PathLike) -> None:
    """`folder` and any missing parent made 0700 (whatever the umask); one that
    exists is left as it is (it may be a home directory)."""
    folder = Path(folder)
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
            os.chmod(folder, 0o700)
        except FileExistsError:
            pass


def private_sqlite_file(path: str | os.PathLike) -> None:
    """Create `path` 0600 (an empty file is an empty SQLite database) before
    SQLite does it 0644, with any missing directory 0700; an existing
    directory is left as it is. An existing file or side file (-wal, -shm)
    readable by others, from an older agent, is tightened, with a warning."""
    path = Path(path)
    private_directory(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        try:
            mode = stat.S_IMODE(p.stat().st_mode)
            if mode & 0o077:
                os.chmod(p, 0o600)
                log.warning("tightened file permissions path=%s from=%o to=600", p, mode)
        except FileNotFoundError:
            pass
        except OSError as err:
            log.warning("file readable by others path=%s, cannot tighten it: %s", p, err)
