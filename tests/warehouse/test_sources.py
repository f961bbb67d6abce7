"""Reading sources: each failure mode gets an error naming the file and the problem."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from passos.errors import SourceError
from warehouse.loader import harmonise_table, validate_header
from warehouse.sources import discover, read_csv, read_workbook

GOOD_HEADER = "RA,Fase,Idade,Gênero,IAA,IEG,IPS,IDA,IPV,IAN,Defasagem,Fase Ideal"
GOOD_ROW = "RA-1,FASE 2,11,Feminino,8.5,7,6,5.5,7.1,5,-1,Fase 3 (7º e 8º ano)"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_reads_a_good_csv(tmp_path: Path) -> None:
    table = read_csv(write(tmp_path / "pede_2030.csv", f"{GOOD_HEADER}\n{GOOD_ROW}\n"))
    assert table.year == 2030 and table.kind == "csv" and len(table.rows) == 1
    assert harmonise_table(table).rows[0]["fase"] == 2


@pytest.mark.parametrize(
    ("name", "content", "encoding", "problem"),
    [
        ("pede_2030.csv", "", "utf-8", "file is empty"),
        ("pede_2030.csv", "RA,Fase\x00\x01\x02", "utf-8", "binary content"),
        ("pede_2030.csv", f"{GOOD_HEADER}\nRA-1,ALFA,8,Menina,não\n", "latin-1", "not UTF-8"),
        ("pede_2030.csv", GOOD_HEADER.replace(",", ";") + "\n", "utf-8", "separator is ';'"),
        ("students.csv", f"{GOOD_HEADER}\n", "utf-8", "pede_YYYY.csv"),
    ],
)
def test_bad_csv_files_are_named_with_their_problem(
    tmp_path: Path, name: str, content: str, encoding: str, problem: str
) -> None:
    with pytest.raises(SourceError, match=problem) as caught:
        read_csv(write(tmp_path / name, content, encoding))
    assert caught.value.source == name


def test_wrong_columns_name_the_missing_column(tmp_path: Path) -> None:
    table = read_csv(write(tmp_path / "pede_2030.csv", "Aluno,Nota\nA,5\n"))
    with pytest.raises(SourceError, match=r"missing column\(s\) 'ra' \(e.g. 'RA'\), 'fase'"):
        validate_header(table)
    few = read_csv(write(tmp_path / "pede_2031.csv", "RA,Fase,IAA\n1,2,3\n"))
    with pytest.raises(SourceError, match="only 1 of the indicator columns"):
        validate_header(few)


def test_truncated_csv_quarantines_the_short_row(tmp_path: Path) -> None:
    text = f"{GOOD_HEADER}\n{GOOD_ROW}\n{GOOD_ROW.replace('RA-1', 'RA-2')[:20]}"
    out = harmonise_table(read_csv(write(tmp_path / "pede_2030.csv", text)))
    assert len(out.rows) == 1 and out.rejected[0].line == 3 and "fields" in out.rejected[0].reason


def test_discover_reports_bad_files_and_reads_the_rest(tmp_path: Path) -> None:
    write(tmp_path / "pede_2030.csv", f"{GOOD_HEADER}\n{GOOD_ROW}\n")
    write(tmp_path / "pede_2031.csv", "")
    write(tmp_path / "notes.csv", "ignored: not a pede_YYYY name\n")
    write(tmp_path / "broken.xlsx", "not a zip")
    found = discover([tmp_path, tmp_path / "missing"])
    assert [t.origin for t in found.tables] == ["pede_2030.csv"]
    assert sorted(e.source for e in found.errors) == sorted(["broken.xlsx", "pede_2031.csv", str(tmp_path / "missing")])


def test_single_csv_file_is_a_source(tmp_path: Path) -> None:
    path = write(tmp_path / "pede_2030.csv", f"{GOOD_HEADER}\n{GOOD_ROW}\n")
    assert [t.year for t in discover([path]).tables] == [2030]


def make_workbook(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def test_workbook_sheets_become_years(tmp_path: Path) -> None:
    header = GOOD_HEADER.split(",")
    row: list[object] = ["RA-1", "ALFA", 8, "Menina", 8.5, 7, 6, 5.5, 7.1, 5, -1, "ALFA (1° e 2° ano)"]
    path = make_workbook(tmp_path / "book.xlsx", {"PEDE2030": [header, row], "Notas": [["x"]], "PEDE 2031": [header]})
    tables = read_workbook(path)
    assert [(t.year, len(t.rows), t.origin) for t in tables] == [
        (2030, 1, "book.xlsx[PEDE2030]"),
        (2031, 0, "book.xlsx[PEDE 2031]"),
    ]
    assert harmonise_table(tables[0]).rows[0]["idade"] == 8


def test_workbook_without_pede_sheets_is_an_error(tmp_path: Path) -> None:
    path = make_workbook(tmp_path / "book.xlsx", {"Plan1": [["a"]]})
    with pytest.raises(SourceError, match="no PEDEYYYY sheet"):
        read_workbook(path)


def test_an_empty_pede_sheet_is_named_and_the_others_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    header = GOOD_HEADER.split(",")
    row: list[object] = ["RA-1", "ALFA", 8, "Menina", 8.5, 7, 6, 5.5, 7.1, 5, -1, "ALFA (1° e 2° ano)"]
    path = make_workbook(tmp_path / "book.xlsx", {"PEDE2030": [header, row], "PEDE2031": []})
    with caplog.at_level("WARNING", logger="warehouse.sources"):
        tables = read_workbook(path)
    assert [t.origin for t in tables] == ["book.xlsx[PEDE2030]"]
    assert "book.xlsx[PEDE2031]: sheet is empty: skipped" in caplog.text


def test_an_indicator_column_missing_from_a_file_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    header, values = GOOD_HEADER.split(","), GOOD_ROW.split(",")
    keep = [i for i, name in enumerate(header) if name != "IDA"]
    text = ",".join(header[i] for i in keep) + "\n" + ",".join(values[i] for i in keep) + "\n"
    with caplog.at_level("WARNING", logger="warehouse.loader"):
        harmonised = harmonise_table(read_csv(write(tmp_path / "pede_2030.csv", text)))
    assert harmonised.rows[0]["ida"] is None
    assert "pede_2030.csv: indicator column(s) ['ipp', 'ida'] not in this file: left empty" in caplog.text
