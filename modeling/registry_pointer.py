"""The champion pointer file of a task: read checked, written atomically, fingerprinted, locked.

The pointer is written to a temporary file, fsync'd, then ``os.replace``'d: readers see the
old pointer or the new one, never a torn one. Writers that read-modify-write it hold
:func:`task_lock` (a separate ``.lock`` file, flock'd).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modeling.registry_errors import CorruptPointerError, UnsafeFileError
from modeling.registry_files import dumps, fsync_dir, open_regular, read_bounded, write_bytes

POINTER_FILE = "champion.json"
LOCK_FILE = ".lock"
POINTER_MAX_BYTES = 1024 * 1024


def read_pointer(path: Path, *, timeout_s: float) -> dict[str, Any] | None:
    """The pointer at ``path`` (``task, version, promoted_at, reason, history``), or None when absent.

    Raises:
        CorruptPointerError: The file is not a pointer the registry wrote.
    """
    try:
        raw = read_bounded(path, max_bytes=POINTER_MAX_BYTES, timeout_s=timeout_s)
    except FileNotFoundError:
        return None
    except UnsafeFileError as exc:
        raise CorruptPointerError(str(exc)) from exc
    try:
        pointer = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptPointerError(f"{path} is not valid JSON: {exc}") from exc
    if (
        not isinstance(pointer, dict)
        or not isinstance(pointer.get("version"), str)
        or not isinstance(pointer.get("history"), list)
    ):
        raise CorruptPointerError(f"{path} lacks a 'version' string or a 'history' list")
    return pointer


def signature(path: Path) -> tuple[int, int, int, str] | None:
    """``(st_mtime_ns, st_size, st_ino, sha256 of the content)`` of the pointer, or None when absent.

    Read through one open file descriptor: one stat and one read of a small file.

    Raises:
        CorruptPointerError: The pointer is not a regular file.
    """
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        return None
    except UnsafeFileError as exc:
        raise CorruptPointerError(str(exc)) from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        content = handle.read(POINTER_MAX_BYTES + 1)
    return (info.st_mtime_ns, info.st_size, info.st_ino, hashlib.sha256(content).hexdigest())


def write_pointer(
    path: Path, *, task: str, version: str, reason: str, history: list[str], meta: dict[str, Any]
) -> dict[str, Any]:
    """Replace the pointer at ``path`` atomically with one naming ``version``; returns it."""
    pointer = {
        "task": task,
        "version": version,
        "promoted_at": datetime.now(UTC).isoformat(),
        "reason": reason,
        "history": history,
    }
    if "metadata_sha256" in meta:  # what check_pointer compares: the pointer was written for this version
        pointer["metadata_sha256"] = meta["metadata_sha256"]
    temp = path.with_name(f".{POINTER_FILE}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        write_bytes(temp, dumps(pointer))
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return pointer


@contextlib.contextmanager
def task_lock(task_dir: Path) -> Iterator[None]:
    """Hold the task's exclusive lock (creating the task's directory if need be)."""
    task_dir.mkdir(parents=True, exist_ok=True)
    # A separate lock file, never replaced: locking the pointer itself would lock an
    # inode that os.replace swaps away.
    with (task_dir / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
