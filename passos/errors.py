"""Specific exceptions that name the bad value. Only ``serving/`` turns them into HTTP errors."""

from __future__ import annotations

from enum import IntEnum


class PassosError(Exception):
    """Base class of the project's own errors."""


class SourceError(PassosError):
    """An input file that cannot be read as a PEDE file; names the file and what is wrong."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


class WarehouseBusyError(PassosError):
    """Another process holds the warehouse for writing."""


class LeakageError(PassosError):
    """A feature breaks the leakage policy or separates the target almost perfectly."""


class ModelNotFoundError(PassosError):
    """No such model version, or no champion for a task."""


class ModelInvalidError(PassosError):
    """A model file that cannot be loaded or fails its checks."""


class ExitCode(IntEnum):
    """The ``passos`` command's exit codes (README "Operating it", docs/operating.md)."""

    OK = 0
    UNEXPECTED = 1  # a bug: a traceback is allowed
    USAGE = 2  # a bad option value or a path that does not exist
    INPUT_FAILED = 3  # some input failed while the rest loaded
    WAREHOUSE_BUSY = 4  # another process holds the warehouse for writing
    GATE_REJECTED = 10  # the recall gate rejected a candidate (`passos train`)
    RETRAIN_RECOMMENDED = 11  # drift says "retrain recommended" (`passos drift`)
