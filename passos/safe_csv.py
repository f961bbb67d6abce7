"""The one CSV writer of the project: every CSV it writes goes through :func:`write_csv`.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to a
spreadsheet (OWASP, "CSV Injection"): ``=HYPERLINK(...)`` in a student's ``turma`` would run when
an analyst opens the file. Such text cells get a leading ``'`` so the spreadsheet shows them as
text. Numbers stay numbers: numeric columns are written as they are, and a text cell that is a
plain number (``-1``, ``+2.5``, ``-3e4``) is left alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


def neutralise(value: Any) -> Any:
    """``value`` with a leading ``'`` when it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _PLAIN_NUMBER.match(value):
        return "'" + value
    return value


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells and column names are neutralised; numeric columns untouched."""
    out = frame.copy()
    for column in out.columns:
        if not (pd.api.types.is_numeric_dtype(out[column]) or pd.api.types.is_datetime64_any_dtype(out[column])):
            out[column] = out[column].astype(object).map(neutralise)
    out.columns = [neutralise(str(c)) for c in out.columns]
    return out


def write_csv(frame: pd.DataFrame, path: Path | None = None) -> str:
    """Write ``frame`` as CSV (no index) to ``path``, or return the text when ``path`` is ``None``.

    Returns:
        The CSV text when ``path`` is ``None``, else ``""``.
    """
    safe = safe_frame(frame)
    if path is None:
        return safe.to_csv(index=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    safe.to_csv(path, index=False)
    return ""
