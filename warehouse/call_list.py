"""The call list as files coordinators open: a CSV and an ``.xlsx`` of the warehouse view ``call_list``.

Both are safe to open in a spreadsheet: the CSV goes through :func:`passos.safe_csv.write_csv`
(text that would run as a formula gets a leading ``'``), and every text cell of the workbook is
stored as text, so ``=HYPERLINK(...)`` in a class name is shown, never run.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from openpyxl import Workbook
from openpyxl.utils import get_column_letter

from passos.safe_csv import write_csv
from passos.settings import Settings
from warehouse.connection import connect

SHEET = "call list"
# Widths in characters of the columns a coordinator reads first; others get the default.
_WIDTHS = {"category": 14, "level": 9, "turma": 16, "reasons": 90, "model_version": 28, "scored_at": 20}


def read_call_list(settings: Settings, *, path: Path | None = None) -> pd.DataFrame:
    """The rows of the view ``call_list``: "newly at risk" first, then "behind now", each by rank.

    Args:
        settings: where the warehouse is.
        path: another database with the same view (the analysts' copy); default the warehouse.
    """
    with connect(settings, read_only=True, path=path) as con:
        return con.execute("select * from call_list").df()


def write_call_list(frame: pd.DataFrame, out: Path) -> tuple[Path, Path]:
    """Write ``frame`` as ``out`` with the suffixes ``.csv`` and ``.xlsx``.

    Returns:
        The paths of the CSV and of the workbook.
    """
    csv_path, xlsx_path = out.with_suffix(".csv"), out.with_suffix(".xlsx")
    rows = frame.copy()
    for column in rows.columns:
        if pd.api.types.is_datetime64_any_dtype(rows[column]):
            rows[column] = rows[column].dt.strftime("%Y-%m-%d %H:%M:%S")
    write_csv(rows, csv_path)
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None  # a new workbook always has one sheet
    sheet.title = SHEET
    for j, name in enumerate(rows.columns, start=1):
        _text(sheet.cell(row=1, column=j), str(name))
        sheet.column_dimensions[get_column_letter(j)].width = _WIDTHS.get(str(name), 12)
    for i, record in enumerate(rows.itertuples(index=False), start=2):
        for j, value in enumerate(record, start=1):
            cell = sheet.cell(row=i, column=j)
            if value is None or (isinstance(value, float) and pd.isna(value)):
                continue
            if isinstance(value, str):
                _text(cell, value)
            else:
                cell.value = value.item() if hasattr(value, "item") else value
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = sheet.dimensions
    xlsx_path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(xlsx_path)
    return csv_path, xlsx_path


def _text(cell: object, value: str) -> None:
    """Store ``value`` as text: openpyxl would otherwise store a string that starts with ``=`` as a formula."""
    cell.value = value  # type: ignore[attr-defined]
    cell.data_type = "s"  # type: ignore[attr-defined]
