"""Finding and reading the yearly PEDE files: CSVs named ``pede_YYYY.csv`` and workbooks with
``PEDEYYYY`` sheets. Reading only: harmonisation lives in ``features/harmonise.py``."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import logging
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from passos.errors import SourceError
from passos.settings import Settings, get_settings

log = logging.getLogger(__name__)

CSV_NAME = re.compile(r"^pede_(\d{4})\.csv$", re.IGNORECASE)
SHEET_NAME = re.compile(r"^\s*PEDE\s*(\d{4})\s*$", re.IGNORECASE)
MAX_FIELD = 1_000_000
# A physical CSV line may hold one field of MAX_FIELD characters and the separators around it;
# longer lines are refused before the csv module turns them into millions of fields.
MAX_LINE = MAX_FIELD + 65_536
_CHUNK = 1 << 20
# A formula in a sheet's XML: `<f>`, `<f t="shared" .../>`, or the same with a namespace prefix.
_FORMULA_TAG = re.compile(rb"<(?:\w+:)?f[\s>/]")
_BLANK = " ,\t\r\n"


@dataclass(frozen=True)
class Limits:
    """Bounds on one source, checked while it is read so that memory and time stay bounded."""

    max_bytes: int = 100_000_000
    max_columns: int = 500
    max_cells: int = 10_000_000
    spent_cells: int = 0  # cells already held by earlier sources of the same ingest

    def too_many_cells(self, origin: str, detail: str = "") -> SourceError:
        """The error of a source that would take the ingest past its cell budget."""
        if self.spent_cells:
            return SourceError(
                origin,
                f"more than the {self.max_cells - self.spent_cells:,} cells left of this ingest's budget of "
                f"{self.max_cells:,}{detail} (PASSOS_SOURCE_MAX_CELLS; earlier sources hold {self.spent_cells:,}): "
                "load it on its own, or raise the budget",
            )
        return SourceError(origin, f"more than {self.max_cells:,} cells{detail} (PASSOS_SOURCE_MAX_CELLS)")

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Limits:
        settings = settings or get_settings()
        return cls(settings.source_max_bytes, settings.source_max_columns, settings.source_max_cells)


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
    linked: bool = False  # the file is a symbolic link: its content is never quoted in notes or logs
    cells: int = 0  # cells read to get it, counted against the ingest's budget
    # Workbook formula cells with no saved value (read as empty), counted by column name.
    unevaluated: dict[str, int] = field(default_factory=dict)


@dataclass
class Discovery:
    """What was found under the given paths: tables by source, and files that could not be read."""

    tables: list[YearTable] = field(default_factory=list)
    errors: list[SourceError] = field(default_factory=list)


def source_files(paths: Iterable[Path]) -> tuple[list[Path], list[SourceError]]:
    """The input files under ``paths`` (folders or files), and an error for each path that does not exist.

    Only names are looked at: nothing is opened, so this is cheap to retry and to pass around.
    """
    files: list[Path] = []
    errors: list[SourceError] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in (".csv", ".xlsx"))
            files.extend(p for p in found if p.suffix.lower() == ".xlsx" or CSV_NAME.match(p.name))
        elif path.is_file():
            files.append(path)
        else:
            errors.append(SourceError(str(path), "no such file or folder"))
    return files, errors


def discover(paths: Iterable[Path], limits: Limits | None = None) -> Discovery:
    """Read every PEDE table under ``paths`` (folders or files). Bad files become errors, not exceptions.

    Every table read is held until the load, so the cell limit is one budget for all of them:
    a source that would take the total past ``limits.max_cells`` fails by name, and the sources
    read before it still load.
    """
    limits = limits or Limits.from_settings()
    files, errors = source_files(paths)
    found = Discovery(errors=errors)
    spent = 0
    for file in files:
        budget = replace(limits, spent_cells=spent)
        try:
            tables = read_workbook(file, budget) if file.suffix.lower() == ".xlsx" else [read_csv(file, budget)]
        except SourceError as error:
            log.error("%s", error)
            found.errors.append(error)
            continue
        found.tables.extend(tables)
        spent += sum(table.cells for table in tables)
    return found


def is_linked(path: Path) -> bool:
    """Whether ``path`` or any folder above it is a symbolic link (its target could be any file)."""
    return path.resolve() != path.absolute()


def brief(names: Iterable[str], shown: int = 8, width: int = 40) -> str:
    """A short, bounded rendering of a list of names for a log line or a note."""
    items = list(names)
    parts = [repr(n if len(n) <= width else n[:width] + "…") for n in items[:shown]]
    more = f" and {len(items) - shown:,} more" if len(items) > shown else ""
    return "[" + ", ".join(parts) + more + "]"


def _check_size(path: Path, limits: Limits) -> int:
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise SourceError(
            path.name, f"{size:,} bytes is over the limit of {limits.max_bytes:,} (PASSOS_SOURCE_MAX_BYTES)"
        )
    return size


def _check_csv_bytes(path: Path) -> str:
    """Hash the file in chunks and check it is non-empty, text and UTF-8, without holding it in memory."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    blank = True
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            if offset == 0 and b"\x00" in chunk[:4096]:
                raise SourceError(path.name, "binary content, not a CSV file")
            digest.update(chunk)
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                where = offset + error.start
                raise SourceError(
                    path.name, f"not UTF-8 (a byte at offset {where:,} is not valid UTF-8); re-export it as UTF-8"
                ) from None
            blank = blank and not chunk.strip()
            offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise SourceError(path.name, "not UTF-8 (the file ends inside a character); re-export it as UTF-8") from None
    if blank:
        raise SourceError(path.name, "file is empty")
    return digest.hexdigest()


def _bounded_lines(handle: io.TextIOBase, name: str) -> Iterator[str]:
    """The file's lines for the csv module, refusing one longer than :data:`MAX_LINE` before it
    is parsed, and dropping blank lines (only commas and spaces) outside quoted fields unparsed:
    a file of millions of empty records costs a scan, not millions of parsed rows."""
    quoted = False  # inside a quoted field that spans lines (an odd number of quotes so far)
    while line := handle.readline(MAX_LINE + 1):
        if len(line) > MAX_LINE:
            raise SourceError(name, f"a line longer than {MAX_LINE:,} characters: not a PEDE table")
        if not quoted and not line.strip(_BLANK):
            continue
        quoted ^= line.count('"') % 2 == 1
        yield line


def read_csv(path: Path, limits: Limits | None = None) -> YearTable:
    """Read a ``pede_YYYY.csv`` (UTF-8, comma-separated), streaming it within ``limits``.

    Raises:
        SourceError: the name has no year; the file is over a limit, empty, not UTF-8, or not
            comma-separated.
    """
    limits = limits or Limits.from_settings()
    match = CSV_NAME.match(path.name)
    if not match:
        raise SourceError(path.name, "cannot tell the year: CSV files must be named pede_YYYY.csv")
    _check_size(path, limits)
    sha = _check_csv_bytes(path)
    csv.field_size_limit(MAX_FIELD)
    header: list[str] = []
    rows: list[list[str]] = []
    cells = 0
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(_bounded_lines(handle, path.name))
        try:
            header = next(reader, [])
            if len(header) > limits.max_columns:
                raise SourceError(
                    path.name,
                    f"header has {len(header):,} columns, over the limit of {limits.max_columns:,} "
                    "(PASSOS_SOURCE_MAX_COLUMNS): not a PEDE table",
                )
            if len(header) <= 1 and header and ";" in header[0]:
                raise SourceError(path.name, "separator is ';' but PEDE files are comma-separated")
            for record in reader:
                if not any(cell.strip() for cell in record):
                    continue
                cells += len(record)
                if cells > limits.max_cells - limits.spent_cells:
                    raise limits.too_many_cells(path.name)
                rows.append(record)
        except csv.Error as error:
            raise SourceError(path.name, f"malformed CSV: {error}") from None
    return YearTable(
        origin=path.name,
        path=path,
        year=int(match.group(1)),
        kind="csv",
        sha256=sha,
        header=[h.strip() for h in header],
        rows=rows,
        linked=is_linked(path),
        cells=cells + len(header),
    )


def _check_workbook_size(path: Path, limits: Limits) -> None:
    """Refuse a workbook whose parts unpack to more than the byte limit (a zip bomb), before parsing."""
    _check_size(path, limits)
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError) as error:
        raise SourceError(path.name, f"not a readable .xlsx workbook ({type(error).__name__})") from None
    if unpacked > limits.max_bytes:
        raise SourceError(
            path.name,
            f"unpacks to {unpacked:,} bytes, over the limit of {limits.max_bytes:,} (PASSOS_SOURCE_MAX_BYTES)",
        )


def read_workbook(path: Path, limits: Limits | None = None) -> list[YearTable]:
    """Read every ``PEDEYYYY`` sheet of a workbook, cells rendered as the CSV export renders them.

    Rows are streamed: the size a sheet claims for itself (its ``dimension``) is ignored, so a
    sheet that claims to end at ``XFD1048576`` costs only the cells it really holds, and a sheet
    over the cell budget is refused by name.

    A formula cell holds the value its spreadsheet program saved with it; a workbook written by
    a program that does not compute formulas has none, and such cells read as empty. They are
    counted by column (``YearTable.unevaluated``) so the ingest reports them. A sheet with a
    formula is read a second time for that, in step with the first; a sheet without is read once.
    """
    import openpyxl

    limits = limits or Limits.from_settings()
    _check_workbook_size(path, limits)
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises many types for a broken file
        raise SourceError(path.name, f"not a readable .xlsx workbook ({type(error).__name__})") from None
    tables = []
    spent = limits.spent_cells
    formulas_book = None  # the same workbook read with its formulas, opened for a sheet that has any
    try:
        for sheet_name in book.sheetnames:
            match = SHEET_NAME.match(sheet_name)
            if not match:
                log.info("%s: sheet %s ignored (not PEDEYYYY)", path.name, brief([sheet_name]))
                continue
            origin = f"{path.name}[{sheet_name}]"
            formula_rows = None
            if _has_formulas(book, book[sheet_name]):
                formulas_book = formulas_book or openpyxl.load_workbook(path, read_only=True, data_only=False)
                formula_sheet = formulas_book[sheet_name]
                formula_sheet.reset_dimensions()
                formula_rows = formula_sheet.iter_rows(values_only=True, max_col=limits.max_columns + 1)
            header, body, cells, unevaluated = _read_sheet(
                book[sheet_name], origin, replace(limits, spent_cells=spent), formula_rows
            )
            spent += cells
            if not header:
                log.warning("%s: sheet is empty: skipped", origin)
                continue
            digest = _sha256("\n".join("\x1f".join(r) for r in [header, *body]).encode())
            tables.append(
                YearTable(
                    origin=origin,
                    path=path,
                    year=int(match.group(1)),
                    kind="xlsx",
                    sha256=digest,
                    header=header,
                    rows=body,
                    linked=is_linked(path),
                    cells=cells,
                    unevaluated=unevaluated,
                )
            )
    finally:
        book.close()
        if formulas_book is not None:
            formulas_book.close()
    if not tables:
        raise SourceError(path.name, "workbook has no PEDEYYYY sheet with a header row")
    return tables


def _has_formulas(book: Any, sheet: Any) -> bool:
    """Whether a read-only sheet's XML holds a formula, scanned in chunks without parsing it."""
    tail = b""
    with book._archive.open(sheet._worksheet_path) as part:  # openpyxl's read-only sheet: its part of the zip
        while chunk := part.read(_CHUNK):
            if _FORMULA_TAG.search(tail + chunk):
                return True
            tail = chunk[-16:]
    return False


def _read_sheet(
    sheet: Any, origin: str, limits: Limits, formula_rows: Iterator[tuple[Any, ...]] | None = None
) -> tuple[list[str], list[list[str]], int, dict[str, int]]:
    """A sheet's header, its non-empty rows (each as wide as the header), the cells read, within ``limits``,
    and its formula cells without a saved value by column.

    ``formula_rows`` is the same sheet read with its formulas (``data_only=False``), in step with
    ``sheet``: a cell empty in ``sheet`` but not there is a formula whose value was never saved.
    """
    sheet.reset_dimensions()  # trust the cells, not the size the file claims
    header: list[str] = []
    body: list[list[str]] = []
    cells = 0
    unevaluated: dict[str, int] = {}
    # Rows are read one column past the limit: openpyxl fills every empty cell up to a row's last
    # one, so `<row><c r="XFD1"/></row>` alone cost 16,384 cells of work. Every cell read counts
    # toward the budget, empty rows included (each is max_columns + 1 wide as read), so a sheet
    # of "empty" rows is refused like a full one, after at most max_cells cells of work.
    for number, row in enumerate(sheet.iter_rows(values_only=True, max_col=limits.max_columns + 1), start=1):
        cells += len(row)
        if cells > limits.max_cells - limits.spent_cells:
            raise limits.too_many_cells(origin, f", empty ones included, by row {number:,}")
        formulas = next(formula_rows, None) if formula_rows is not None else None
        if formulas is not None and header:
            for j, (value, formula) in enumerate(zip(row[: len(header)], formulas[: len(header)], strict=False)):
                if value is None and formula is not None:
                    name = header[j] or f"column {j + 1}"
                    unevaluated[name] = unevaluated.get(name, 0) + 1
        if not any(v is not None and v != "" for v in row):
            continue
        if len(row) > limits.max_columns and any(v is not None and v != "" for v in row[limits.max_columns :]):
            raise SourceError(
                origin,
                f"row {number:,} has a cell past column {limits.max_columns:,} "
                "(PASSOS_SOURCE_MAX_COLUMNS): not a PEDE table",
            )
        if not header:
            header = [_cell_text(v).strip() for v in row]
            while header and not header[-1]:
                header.pop()
            if len(header) > limits.max_columns:
                raise SourceError(
                    origin,
                    f"header has {len(header):,} columns, over the limit of {limits.max_columns:,} "
                    "(PASSOS_SOURCE_MAX_COLUMNS): not a PEDE table",
                )
            continue
        text = [_cell_text(v) for v in row[: len(header)]]
        if any(text):
            body.append(text + [""] * (len(header) - len(text)))
    return header, body, cells, unevaluated


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cell_text(value: Any) -> str:
    """Render a cell as the CSV export does (``str`` of the value; empty for none)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)
    return str(value)
