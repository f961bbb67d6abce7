"""The library versions a model bundle records at training time, and how this process differs from them."""

from __future__ import annotations

import platform

import numpy as np

from passos.errors import ModelInvalidError

BUNDLE_FORMAT = 2


def library_versions() -> dict[str, str]:
    """Versions of the libraries a bundle depends on, recorded at training time."""
    import lightgbm
    import sklearn

    return {
        "format": str(BUNDLE_FORMAT),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "lightgbm": lightgbm.__version__,
        "scikit-learn": sklearn.__version__,
    }


def version_differences(saved_versions: dict[str, str], *, kind: str) -> list[str]:
    """Compare the versions a bundle recorded (:func:`library_versions` then) with this process's.

    Returns:
        Human-readable notes on minor differences.

    Raises:
        ModelInvalidError: another bundle format, or another major version of numpy or
            (for LightGBM bundles) lightgbm, which may not read the model the same way.
    """
    current = library_versions()
    notes = []
    if saved_versions.get("format") != current["format"]:
        raise ModelInvalidError(
            f"bundle format {saved_versions.get('format')!r}, this code reads {current['format']!r}"
        )
    majors = ["numpy"] + (["lightgbm"] if kind == "lightgbm" else [])
    for library in ("python", "numpy", "lightgbm", "scikit-learn"):
        saved, now = saved_versions.get(library), current[library]
        if saved == now:
            continue
        if library in majors and (saved or "").split(".")[0] != now.split(".")[0]:
            raise ModelInvalidError(f"model trained with {library} {saved}, this process has {now}")
        notes.append(f"{library} {saved} at training, {now} now")
    return notes
