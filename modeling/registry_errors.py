"""The registry's errors: each names the task, version or file it is about."""

from __future__ import annotations

from passos.errors import ModelInvalidError, PassosError


class RegistryError(PassosError):
    """A registry operation that cannot be done as asked."""


class VersionExistsError(RegistryError):
    """A version is saved twice; versions are immutable."""


class PromotionRefusedError(RegistryError):
    """A version that the gate did not accept cannot become champion."""


class NoPreviousChampionError(RegistryError):
    """A rollback with no earlier champion to return to."""


class UnsafeFileError(ModelInvalidError):
    """A registry file that is not a regular file, is over its size limit, or reads too slowly."""


class CorruptPointerError(RegistryError):
    """A champion pointer that is not the JSON the registry writes (edited by hand?)."""
