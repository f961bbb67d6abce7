"""A workbook's formula cells that have no saved value are reported by sheet, column and count.

openpyxl writes formulas without their values (only a spreadsheet program computes them), so a
workbook it wrote is what a tool that never opened Excel would send: every such cell reads as
empty, and the ingest report says so instead of loading blanks silently.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import openpyxl
import pytest
from typer.testing import CliRunner

from cli.app import app
from passos.settings import Settings
from warehouse import loader
from warehouse.connection import connect
from warehouse.sources import YearTable, discover, read_workbook

HEADER = ["RA", "Fase", "Idade", "Gênero", "IAA", "IEG", "IPS", "IDA", "IPV", "IAN", "Defasagem", "Fase Ideal"]


def student(i: int) -> list[object]:
    return [f"RA-{i}", "FASE 2", 11, "Feminino", 8.5, 7, 6, 5.5, 7.1, 5, -1, "Fase 3 (7º e 8º ano)"]


def formula_workbook(path: Path) -> Path:
    """PEDE2030: IDA a formula in rows 2-4, IPV in row 3; PEDE2031 and row 5 plain values."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "PEDE2030"
    sheet.append(HEADER)
    for i in range(4):
        sheet.append(student(i))
    for row in (2, 3, 4):
        sheet[f"H{row}"] = f"=E{row}-3"  # IDA
    sheet["I3"] = "=AVERAGE(E3:H3)"  # IPV
    plain = book.create_sheet("PEDE2031")
    plain.append(HEADER)
    plain.append(student(9))
    book.save(path)
    return path


def test_formulas_without_values_are_counted_by_column(tmp_path: Path) -> None:
    with_formulas, plain = read_workbook(formula_workbook(tmp_path / "book.xlsx"))
    assert with_formulas.unevaluated == {"IDA": 3, "IPV": 1}
    assert [row[7] for row in with_formulas.rows] == ["", "", "", "5.5"]  # read as empty, as before
    assert plain.unevaluated == {}


def test_a_formula_with_a_saved_value_is_read_and_not_reported(tmp_path: Path) -> None:
    path = formula_workbook(tmp_path / "book.xlsx")
    with zipfile.ZipFile(path) as source:
        parts = {name: source.read(name) for name in source.namelist()}
    name = "xl/worksheets/sheet1.xml"
    assert b"<f>E2-3</f><v />" in parts[name]  # openpyxl's formula cell: no value
    parts[name] = parts[name].replace(b"<f>E2-3</f><v />", b"<f>E2-3</f><v>5.5</v>")
    with zipfile.ZipFile(path, "w") as target:
        for part, data in parts.items():
            target.writestr(part, data)
    table = read_workbook(path)[0]
    assert table.unevaluated == {"IDA": 2, "IPV": 1}
    assert table.rows[0][7] == "5.5"


def test_the_ingest_report_names_the_sheet_columns_and_counts(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    formula_workbook(tmp_path / "book.xlsx")
    with caplog.at_level(logging.WARNING, logger="warehouse.loader"), connect(settings) as con:
        results = {r.source: r for r in loader.ingest(con, "run", discover([tmp_path / "book.xlsx"]))}
        notes = dict(con.execute("select source, note from ingest_runs").fetchall())
    expected = (
        "4 formula cells without a saved value read as empty, by column: 'IDA' 3, 'IPV' 1"
        " (open the workbook in a spreadsheet program and save it to store their values)"
    )
    assert results["book.xlsx[PEDE2030]"].status == "loaded" and results["book.xlsx[PEDE2030]"].note == expected
    assert notes["book.xlsx[PEDE2030]"] == expected
    assert results["book.xlsx[PEDE2031]"].note == ""
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"book.xlsx[PEDE2030]: {expected}" in warnings


def test_passos_ingest_prints_the_warning(prefect_harness: None, settings: Settings, tmp_path: Path) -> None:
    formula_workbook(tmp_path / "book.xlsx")
    result = CliRunner().invoke(app, ["--quiet", "ingest", "--source", str(tmp_path / "book.xlsx")])
    assert result.exit_code == 0, result.output
    assert "warning: book.xlsx[PEDE2030]: 4 formula cells without a saved value read as empty" in result.output
    assert "warning: book.xlsx[PEDE2031]" not in result.output


def table(unevaluated: dict[str, int], *, linked: bool = False) -> YearTable:
    return YearTable(
        "book.xlsx[PEDE2030]", Path("book.xlsx"), 2030, "xlsx", "", [], linked=linked, unevaluated=unevaluated
    )


def test_the_note_is_bounded_and_names_nothing_of_a_linked_file() -> None:
    assert loader.formula_note(table({})) == ""
    many = loader.formula_note(table({f"col{i}": 1 for i in range(10)}))
    assert many.startswith("10 formula cells") and "'col7' 1 and 2 more columns (open" in many
    assert "'col8'" not in many
    linked = loader.formula_note(table({"IDA": 3, "IPV": 1}, linked=True))
    assert "in 2 columns (names withheld: the source is a symbolic link)" in linked and "IDA" not in linked
