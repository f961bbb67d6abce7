"""Finding and reading the yearly PEDE files: CSVs named ``pede_YYYY.csv`` and workbooks with
``PEDEYYYY`` sheets. Reading only: harmonisation lives in ``features/harmonise.py``."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from passos.errors import SourceError

log = logging.getLogger(__name__)

CSV_NAME = re.compile(r"^pede_(\d{4})\.csv$", re.IGNORECASE)
SHEET_NAME = re.compile(r"^\s*PEDE\s*(\d{4})\s*$", re.IGNORECASE)
MAX_FIELD = 1_000_000


@dataclass
class YearTable:
    """One year's raw table from one source."""

    origin: str  # what a person recognises: "pede_2022.csv" or "workbook.xlsx[PEDE2022]"
    path: Path
    year: int
    kind: str  # "csv" | "xlsx"
    sha256: str
    header: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    first_line: int = 2


@dataclass
class Discovery:
    """What was found under the given paths: tables by source, and files that could not be read."""

    tables: list[YearTable] = field(default_factory=list)
    errors: list[SourceError] = field(default_factory=list)


def discover(paths: Iterable[Path]) -> Discovery:
    """Read every PEDE table under ``paths`` (folders or files). Bad files become errors, not exceptions."""
    found = Discovery()
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in (".csv", ".xlsx"))
            files = [p for p in files if p.suffix.lower() == ".xlsx" or CSV_NAME.match(p.name)]
        elif path.is_file():
            files = [path]
        else:
            found.errors.append(SourceError(str(path), "no such file or folder"))
            continue
        for file in files:
            try:
                if file.suffix.lower() == ".xlsx":
                    found.tables.extend(read_workbook(file))
                else:
                    found.tables.append(read_csv(file))
            except SourceError as error:
                log.error("%s", error)
                found.errors.append(error)
    return found


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_csv(path: Path) -> YearTable:
    """Read a ``pede_YYYY.csv`` (UTF-8, comma-separated).

    Raises:
        SourceError: the name has no year, the file is empty, not UTF-8, or not comma-separated.
    """
    match = CSV_NAME.match(path.name)
    if not match:
        raise SourceError(path.name, "cannot tell the year: CSV files must be named pede_YYYY.csv")
    data = path.read_bytes()
    if not data.strip():
        raise SourceError(path.name, "file is empty")
    if b"\x00" in data[:4096]:
        raise SourceError(path.name, "binary content, not a CSV file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SourceError(
            path.name, f"not UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start}); re-export it as UTF-8"
        ) from None
    csv.field_size_limit(MAX_FIELD)
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise SourceError(path.name, f"malformed CSV: {error}") from None
    header = records[0] if records else []
    if len(header) <= 1 and header and ";" in header[0]:
        raise SourceError(path.name, "separator is ';' but PEDE files are comma-separated")
    return YearTable(
        origin=path.name,
        path=path,
        year=int(match.group(1)),
        kind="csv",
        sha256=_sha256(data),
        header=[h.strip() for h in header],
        rows=[r for r in records[1:] if any(cell.strip() for cell in r)],
    )


def read_workbook(path: Path) -> list[YearTable]:
    """Read every ``PEDEYYYY`` sheet of a workbook, cells rendered as the CSV export renders them."""
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises many types for a broken file
        raise SourceError(path.name, f"not a readable .xlsx workbook ({type(error).__name__}: {error})") from None
    tables = []
    try:
        for sheet_name in book.sheetnames:
            match = SHEET_NAME.match(sheet_name)
            if not match:
                log.info("%s: sheet %r ignored (not PEDEYYYY)", path.name, sheet_name)
                continue
            rows = [[_cell_text(v) for v in row] for row in book[sheet_name].iter_rows(values_only=True)]
            while rows and not any(rows[-1]):
                rows.pop()
            if not rows:
                continue
            header = [h.strip() for h in rows[0]]
            while header and not header[-1]:
                header.pop()
            body = [r[: len(header)] for r in rows[1:] if any(r)]
            digest = _sha256("\n".join("\x1f".join(r) for r in [header, *body]).encode())
            tables.append(
                YearTable(
                    origin=f"{path.name}[{sheet_name}]",
                    path=path,
                    year=int(match.group(1)),
                    kind="xlsx",
                    sha256=digest,
                    header=header,
                    rows=body,
                )
            )
    finally:
        book.close()
    if not tables:
        raise SourceError(path.name, "workbook has no PEDEYYYY sheet")
    return tables


def _cell_text(value: Any) -> str:
    """Render a cell as the CSV export does (``str`` of the value; empty for none)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)
    return str(value)
