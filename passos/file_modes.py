"""Modes of the files that hold student records: read-write for the owner, read for the group, nothing for others.

DuckDB and ``mkdir`` create files and folders with whatever the process umask allows (0644 and
0755 under the usual 022), so the modes are set after creation, before any record is written.
docs/security.md ("Files on disk") lists which files these are.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_FILE = 0o640
PRIVATE_FOLDER = 0o750


def make_folders(path: Path) -> None:
    """``mkdir -p path``; each folder it creates is 0750 (a folder already there is left as it is)."""
    missing = []
    folder = path
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        try:
            new.mkdir(mode=PRIVATE_FOLDER)
        except FileExistsError:  # another process made it first: its maker set the mode
            continue
        os.chmod(new, PRIVATE_FOLDER)  # mkdir's mode is cut by the umask


def restrict_file(path: Path, *, new: bool) -> None:
    """A file just created becomes 0640; one made before loses any bit 0640 does not give (0644 -> 0640).

    A file of another user (chmod refused) is logged and left as it is, so the caller still works.
    """
    try:
        current = os.stat(path).st_mode & 0o7777
        wanted = PRIVATE_FILE if new else current & PRIVATE_FILE
        if wanted != current:
            os.chmod(path, wanted)
    except OSError as error:
        log.warning("cannot set the mode of %s to %o: %s", path, PRIVATE_FILE, error)


def restrict_tree(folder: Path) -> None:
    """``folder`` and every folder in it 0750, every file in it 0640 (a tree this process just wrote)."""
    os.chmod(folder, PRIVATE_FOLDER)
    for root, folders, files in os.walk(folder):
        for name in folders:
            os.chmod(Path(root) / name, PRIVATE_FOLDER)
        for name in files:
            os.chmod(Path(root) / name, PRIVATE_FILE)
