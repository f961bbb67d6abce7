"""Retention of the prediction log: loaded files go, and the folder never outgrows its bound.

A log file is *sealed* once no writer will append to it again. Writers open a new file when
the current one reaches ``predictions_rotate_bytes`` or has been open for
``predictions_rotate_seconds``, and the name carries the UTC second it was opened, so any
process can tell from the name and the modification time alone:

    sealed = now - max(opened + rotate_seconds, mtime) > SEAL_GRACE_S

A file is *loaded* when it is sealed and the warehouse load read all of it: its size is still
the number of bytes the load read through its last complete line (a line cut short by a crash
is never completed once the file is sealed, so it does not hold the file back). Loaded files are
deleted: the warehouse's ``predictions`` table keeps every row, keyed by file and line, and is
the archive.

The folder's size is bounded by ``predictions_max_bytes``. Over the bound, files are deleted
oldest first whether loaded or not; a file not yet loaded is only ever deleted that way, and
each such deletion is logged at ERROR with the file, its size and its records, because those
predictions are lost to the drift monitoring. Writers check the bound each time they open a
file, and the flow that loads the log checks it after each load.
"""

from __future__ import annotations

import calendar
import logging
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

# Must match serving.prediction_log.FILE_PATTERN (its names are written there).
_FILE_PATTERN = re.compile(r"^predictions-(\d{8}T\d{6})-(\d+)-(\d+)\.jsonl$")
# Slack for a write in flight at the rotation deadline, a slow disk, and clocks of hosts sharing
# the folder that disagree by a little.
SEAL_GRACE_S = 120.0


@dataclass
class Retention:
    """What one pass of :func:`apply_retention` did.

    Attributes:
        pruned: Loaded files deleted.
        pruned_bytes: Their size.
        evicted: Files deleted only to stay under the bound (their records were not all loaded).
        evicted_bytes: Their size.
        kept: Files left in the folder.
        kept_bytes: Their size.
    """

    pruned: list[str] = field(default_factory=list)
    pruned_bytes: int = 0
    evicted: list[str] = field(default_factory=list)
    evicted_bytes: int = 0
    kept: int = 0
    kept_bytes: int = 0


def opened_at(path: Path) -> float:
    """When the writer opened ``path``: the UTC second in its name, as a Unix time.

    Raises:
        ValueError: ``path`` is not named like a prediction log file.
    """
    match = _FILE_PATTERN.match(path.name)
    if match is None:
        raise ValueError(f"{path.name} is not a prediction log file name")
    return float(calendar.timegm(time.strptime(match.group(1), "%Y%m%dT%H%M%S")))


def is_sealed(path: Path, *, rotate_seconds: float, now: float | None = None, grace_s: float = SEAL_GRACE_S) -> bool:
    """Whether no writer will append to ``path`` again (see the module docstring)."""
    now = time.time() if now is None else now
    last_write = max(opened_at(path) + rotate_seconds, path.stat().st_mtime)
    return now - last_write > grace_s


def _files(directory: Path) -> list[tuple[Path, int]]:
    """The log files in ``directory`` with their sizes, oldest first (a file that vanished is left out)."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _FILE_PATTERN.match(path.name)
        if match is None:
            continue
        try:
            size = path.stat().st_size
        except FileNotFoundError:  # pruned meanwhile by another process
            continue
        found.append(((match.group(1), int(match.group(2)), int(match.group(3))), path, size))
    found.sort(key=lambda item: item[0])
    return [(path, size) for _, path, size in found]


def _delete(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:  # another process got there first
        return False
    return True


def _lines(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except OSError:
        return -1


def enforce_bound(directory: Path, max_bytes: int, *, keep: Collection[Path] = ()) -> Retention:
    """Delete log files oldest first until the folder holds at most ``max_bytes`` of them.

    Every deleted file is logged at ERROR: this runs only when the folder is over its bound, and
    the records of a file the warehouse has not loaded yet are then lost to it.

    Args:
        directory: The prediction log folder.
        max_bytes: The bound on the total size of its log files.
        keep: Files never deleted (a writer's open file).

    Returns:
        What was deleted and what is left.
    """
    return _bound(directory, max_bytes, _files(directory), keep=set(keep), result=Retention())


def _bound(
    directory: Path, max_bytes: int, files: list[tuple[Path, int]], *, keep: set[Path], result: Retention
) -> Retention:
    total = sum(size for _, size in files)
    remaining = []
    for path, size in files:
        if total > max_bytes and path not in keep:
            records = _lines(path)
            if _delete(path):
                result.evicted.append(path.name)
                result.evicted_bytes += size
                logger.error(
                    "prediction log over its bound of %d bytes (PASSOS_PREDICTIONS_MAX_BYTES) in %s: deleted %s "
                    "(%d bytes, %d records) before the warehouse loaded it; those predictions are lost",
                    max_bytes,
                    directory,
                    path.name,
                    size,
                    records,
                )
            total -= size
            continue
        remaining.append((path, size))
    result.kept = len(remaining)
    result.kept_bytes = sum(size for _, size in remaining)
    return result


def apply_retention(
    directory: Path,
    read_bytes: Mapping[str, int],
    *,
    rotate_seconds: float,
    max_bytes: int,
    now: float | None = None,
    grace_s: float = SEAL_GRACE_S,
) -> Retention:
    """Delete the files a warehouse load has fully read, then hold the folder under its bound.

    Call it right after the load, with what the load read: a file is deleted only when it is
    sealed and its size is still what the load read (nothing was appended since), or what it
    read plus an incomplete last line that no writer will finish.

    Args:
        directory: The prediction log folder.
        read_bytes: File name to the bytes the load read through its last complete line.
        rotate_seconds: The writers' ``predictions_rotate_seconds``.
        max_bytes: The bound on the folder's log files (``predictions_max_bytes``).
        now: The current Unix time (default: the clock).
        grace_s: Time past the rotation deadline before a file counts as sealed.

    Returns:
        What was deleted and what is left.
    """
    now = time.time() if now is None else now
    result = Retention()
    left: list[tuple[Path, int]] = []
    for path, size in _files(directory):
        done = read_bytes.get(path.name, -1)
        try:
            loaded = (
                0 <= done <= size
                and is_sealed(path, rotate_seconds=rotate_seconds, now=now, grace_s=grace_s)
                and (size == done or not _has_newline_after(path, done))
            )
        except FileNotFoundError:  # deleted meanwhile by another process
            continue
        if not loaded:
            left.append((path, size))
        elif _delete(path):
            if size > done:
                logger.warning("%s ended with an unfinished line, never loaded (%d bytes)", path.name, size - done)
            result.pruned.append(path.name)
            result.pruned_bytes += size
    if result.pruned:
        logger.info(
            "prediction log: deleted %d file(s) the warehouse has loaded (%d bytes)",
            len(result.pruned),
            result.pruned_bytes,
        )
    return _bound(directory, max_bytes, left, keep=set(), result=result)


def _has_newline_after(path: Path, offset: int) -> bool:
    with path.open("rb") as handle:
        handle.seek(offset)
        return b"\n" in handle.read()


def folder_bytes(directory: Path) -> int:
    """The total size of the log files in ``directory``."""
    return sum(size for _, size in _files(directory))
