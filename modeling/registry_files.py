"""The registry's file primitives: bounded reads, durable writes, names and JSON it accepts.

Every registry file is read through :func:`read_bounded` (a regular file only, a size limit and
a time limit) and written through :func:`write_bytes` plus :func:`fsync_dir`, so a rename or
replace publishes data that is on disk.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from modeling.registry_errors import UnsafeFileError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"invalid {what} {name!r}: use letters, digits, '_', '-', '.', not starting with '.'")
    return name


def json_ready(value: Any, path: str = "metadata") -> Any:
    """A copy with NaN/inf as None and numpy values as Python ones; rejects what JSON cannot hold."""
    if isinstance(value, dict):
        return {str(k): json_ready(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist(), path)
    if isinstance(value, np.generic):
        return json_ready(value.item(), path)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise ValueError(f"{path} holds a {type(value).__name__}, which JSON cannot store")


def dumps(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, sort_keys=True, indent=2, allow_nan=False) + "\n").encode()


def open_regular(path: Path) -> int:
    """Open ``path`` for reading without blocking on a FIFO or device; refuse anything but a regular file.

    Returns:
        The open file descriptor (blocking mode restored).

    Raises:
        FileNotFoundError: No such file.
        UnsafeFileError: A FIFO, device, socket or directory (e.g. a model.joblib linked to /dev/zero).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UnsafeFileError(f"{path.name} is not a regular file (mode {stat.filemode(info.st_mode)}); not read")
    os.set_blocking(fd, True)
    return fd


def read_bounded(path: Path, *, max_bytes: int, timeout_s: float) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, read within ``timeout_s`` (checked per chunk).

    Raises:
        FileNotFoundError: No such file.
        UnsafeFileError: Not a regular file, larger than ``max_bytes`` (also when it grows while
            read), or slower than ``timeout_s``.
    """
    fd = open_regular(path)
    deadline = time.monotonic() + timeout_s
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise UnsafeFileError(f"{path.name} is {size} bytes, over the limit of {max_bytes}; not read")
        chunks, total = [], 0
        while chunk := handle.read(1 << 20):
            total += len(chunk)
            if total > max_bytes:
                raise UnsafeFileError(f"{path.name} grew past the limit of {max_bytes} bytes while read")
            if time.monotonic() > deadline:
                raise UnsafeFileError(f"{path.name} took over {timeout_s:g} s to read")
            chunks.append(chunk)
    return b"".join(chunks)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_bytes(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file and directory under ``root`` so the rename publishes durable data."""
    for directory, _subdirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(directory))


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
