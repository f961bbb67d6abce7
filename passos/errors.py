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


class IdSaltError(PassosError):
    """No student-id salt, or one too short to keep the hashes from being reversed."""


class ExitCode(IntEnum):
    """Exit codes of the ``passos`` CLI (README "Operating it", docs/operating.md)."""

    OK = 0
    UNEXPECTED = 1  # a bug: a traceback is allowed
    BUG = 1  # the same code, by its other name
    USAGE = 2  # bad option value, a path that does not exist
    INPUT_FAILED = 3  # some input failed while others loaded
    WAREHOUSE_BUSY = 4  # another process holds the warehouse's write lock
    NO_PREFECT_SERVER = 5  # `passos retrain`: no Prefect server answers, or it serves no retrain deployment
    RUN_FAILED = 6  # `passos retrain --wait`: the flow run failed, crashed or was cancelled
    GATE_REJECTED = 10  # `passos train`: the gate rejected a candidate
    HELD_FOR_REVIEW = 12  # `passos train`: accepted, but judged by a weaker protocol than the champion
    RETRAIN_RECOMMENDED = 11  # `passos drift`: drift says "retrain recommended"
