"""Hostile input files cost bounded memory and time: each is refused by name and the rest still loads.

The memory bounds are measured on a real ingest in a subprocess (its peak RSS from ``wait4``); a
guard thread kills the subprocess past the bound so that a regression fails the test instead of
exhausting the machine.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from passos.errors import SourceError
from passos.settings import Settings
from tests.support.processes import peak_memory
from warehouse import loader
from warehouse.connection import connect
from warehouse.sources import MAX_LINE, Limits, discover, read_csv, read_workbook

HEADER = "RA,Fase,Idade,Gênero,IAA,IEG,IPS,IDA,IPV,IAN,Defasagem,Fase Ideal"
ROW = "RA-{i},FASE 2,11,Feminino,8.5,7,6,5.5,7.1,5,-1,Fase 3 (7º e 8º ano)"
MB = 1024 * 1024
MEMORY_BOUND = 1_500_000_000  # the bound on the whole ingest process

INGEST = """
import json, sys, time
from pathlib import Path
from warehouse import loader
from warehouse.connection import connect
from warehouse.sources import discover
started = time.monotonic()
with connect() as con:
    results = loader.ingest(con, "bounded", discover([Path(sys.argv[1])]))
print(json.dumps({
    "seconds": time.monotonic() - started,
    "results": {r.source: {"status": r.status, "loaded": r.rows_loaded, "note": r.note} for r in results},
}))
"""


def good_csv(path: Path, n: int = 5) -> Path:
    path.write_text("\n".join([HEADER, *(ROW.format(i=i) for i in range(n))]) + "\n", encoding="utf-8")
    return path


def bomb_workbook(path: Path) -> Path:
    """A 5 KB workbook whose sheet PEDE2030 ends at XFD1048576 (one cell there, nothing between)."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "PEDE2030"
    sheet.append(HEADER.split(","))
    sheet.append(ROW.format(i=1).split(","))
    sheet["XFD1048576"] = "x"
    book.save(path)
    return path


def good_workbook(path: Path) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "PEDE2030"
    sheet.append(HEADER.split(","))
    sheet.append(ROW.format(i=1).split(","))
    book.save(path)
    return path


def run_ingest(folder: Path, home: Path, **env: str) -> tuple[dict[str, Any], int]:
    """Ingest ``folder`` in a subprocess; its JSON summary and its own peak RSS in bytes.

    The peak is the child's high-water mark (``VmHWM``, sampled every 50 ms; the child is killed
    if it ever holds more than the bound). ``wait4``'s ``ru_maxrss`` is not used: Linux counts the
    parent's size at fork in it, and a test process that has trained models is itself past the bound.
    """
    out, err = home.parent / "ingest.out", home.parent / "ingest.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", INGEST, str(folder)],
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, "PASSOS_HOME": str(home), **env},
        )
    with peak_memory(child.pid, kill_above=MEMORY_BOUND) as high:
        _, status, _ = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    assert high[0] < MEMORY_BOUND, f"peak RSS {high[0] / MB:.0f} MB"
    assert child.returncode == 0, err.read_text()[-2000:]
    return json.loads(out.read_text().splitlines()[-1]), high[0]  # after any progress bar of DuckDB


@pytest.mark.integration
def test_a_workbook_bomb_is_refused_in_bounded_memory_and_the_rest_loads(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    bomb = bomb_workbook(folder / "bomb.xlsx")
    assert bomb.stat().st_size < 10_000
    good_csv(folder / "pede_2031.csv")
    summary, _ = run_ingest(folder, tmp_path / "home")
    results = summary["results"]
    assert results["bomb.xlsx[PEDE2030]"]["status"] == "failed"
    assert "more than 10,000,000 cells, empty ones included" in results["bomb.xlsx[PEDE2030]"]["note"]
    assert results["pede_2031.csv"] == {"status": "loaded", "loaded": 5, "note": ""}
    assert summary["seconds"] < 60


def empty_row_bomb(path: Path, rows: int) -> Path:
    """A workbook whose sheet PEDE2030 has a header, then ``rows`` rows of one empty cell in column XFD."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "PEDE2030"
    sheet.append(HEADER.split(","))
    book.save(path)
    with zipfile.ZipFile(path) as source:
        parts = {name: source.read(name) for name in source.namelist()}
    name = "xl/worksheets/sheet1.xml"
    empty = "".join(f'<row r="{i}"><c r="XFD{i}"/></row>' for i in range(2, rows + 2))
    parts[name] = parts[name].replace(b"</sheetData>", empty.encode() + b"</sheetData>")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for part, data in parts.items():
            target.writestr(part, data)
    return path


def test_a_workbook_of_empty_rows_is_refused_fast_by_name(tmp_path: Path) -> None:
    """Each `<row><c r="XFD1"/></row>` is 16,384 cells of work for openpyxl: they must count."""
    bomb = empty_row_bomb(tmp_path / "empty-rows.xlsx", 30_000)
    assert bomb.stat().st_size < 250_000
    started = time.perf_counter()
    with pytest.raises(SourceError) as refused:
        read_workbook(bomb)
    seconds = time.perf_counter() - started
    assert "empty-rows.xlsx[PEDE2030]" in str(refused.value) and "empty ones included" in str(refused.value)
    assert seconds < 20, f"took {seconds:.1f} s"


def test_a_bomb_within_the_column_limit_is_refused_by_the_cell_budget(tmp_path: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(SourceError, match=r"bomb.xlsx\[PEDE2030\]: more than 10,000,000 cells, empty ones included"):
        read_workbook(bomb_workbook(tmp_path / "bomb.xlsx"), Limits(max_columns=20_000))
    assert time.perf_counter() - started < 20
    (table,) = read_workbook(good_workbook(tmp_path / "good.xlsx"))
    assert table.header == HEADER.split(",") and len(table.rows) == 1


@pytest.mark.integration
def test_a_large_file_of_commas_is_fast_and_small(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    with (folder / "pede_2030.csv").open("w", encoding="utf-8") as handle:
        handle.write(HEADER + "\n")
        line = "," * 11 + "\n"
        handle.write(line * (40_000_000 // len(line)))  # 40 MB of commas, under the byte limit
    (folder / "pede_2031.csv").write_text("," * 2_000_000 + "\n", encoding="utf-8")  # one 2 MB line
    good_csv(folder / "pede_2032.csv")
    summary, peak = run_ingest(folder, tmp_path / "home")
    results = summary["results"]
    assert results["pede_2030.csv"]["status"] == "loaded" and results["pede_2030.csv"]["loaded"] == 0
    assert results["pede_2031.csv"]["status"] == "failed" and "longer than" in results["pede_2031.csv"]["note"]
    assert results["pede_2032.csv"]["loaded"] == 5
    assert peak < 500_000_000, f"peak RSS {peak / 1e6:.0f} MB"
    assert summary["seconds"] < 90


def test_a_source_over_the_size_limit_is_refused_by_name_before_parsing(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    big = folder / "pede_2030.csv"
    with big.open("wb") as handle:
        handle.truncate(200_000_000)  # 200 MB (sparse): never read, only its size is looked at
    good_csv(folder / "pede_2031.csv")
    started = time.monotonic()
    found = discover([folder], Limits(max_bytes=100_000_000))
    assert time.monotonic() - started < 5
    (error,) = found.errors
    assert error.source == "pede_2030.csv" and "200,000,000 bytes is over the limit" in error.problem
    assert [t.origin for t in found.tables] == ["pede_2031.csv"]


def test_a_workbook_that_unpacks_past_the_limit_is_refused(tmp_path: Path) -> None:
    path = bomb_workbook(tmp_path / "bomb.xlsx")
    with pytest.raises(SourceError, match=r"unpacks to [\d,]+ bytes, over the limit of 6,000"):
        read_workbook(path, Limits(max_bytes=6_000))


@pytest.mark.parametrize(
    ("content", "limits", "problem"),
    [
        (HEADER + "," * 600 + "\n" + ROW.format(i=1) + "\n", Limits(), "header has 612 columns, over the limit of 500"),
        (
            HEADER + "\n" + "\n".join(ROW.format(i=i) for i in range(200)),
            Limits(max_cells=1200),
            "more than 1,200 cells",
        ),
        (HEADER + "\n" + "x" * (MAX_LINE + 10) + "\n", Limits(), "a line longer than"),
    ],
)
def test_csv_limits_name_the_file_and_the_limit(tmp_path: Path, content: str, limits: Limits, problem: str) -> None:
    path = tmp_path / "pede_2030.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SourceError, match=problem) as caught:
        read_csv(path, limits)
    assert caught.value.source == "pede_2030.csv"


def test_a_two_million_column_header_logs_short_lines(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    wide = HEADER + "".join(f",c{i}" for i in range(2_000_000))  # 18 MB of header
    (folder / "pede_2030.csv").write_text(wide + "\n" + ROW.format(i=1) + "\n", encoding="utf-8")
    good_csv(folder / "pede_2031.csv")
    caplog.set_level(logging.DEBUG)
    with connect(settings) as con:
        results = {r.source: r for r in loader.ingest(con, "wide", discover([folder]))}
    assert results["pede_2030.csv"].status == "failed" and "longer than" in results["pede_2030.csv"].note
    assert results["pede_2031.csv"].status == "loaded"
    assert len(results["pede_2030.csv"].note) < 200
    assert max(len(r.getMessage()) for r in caplog.records) < 300


def test_unknown_columns_are_logged_as_a_short_bounded_list(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "pede_2030.csv"
    path.write_text(HEADER + "".join(f",extra{i}" for i in range(300)) + "\n" + ROW.format(i=1) + "," * 300 + "\n")
    caplog.set_level(logging.INFO)
    loader.harmonise_table(read_csv(path, Limits()))
    (line,) = [r.getMessage() for r in caplog.records if "unknown column" in r.getMessage()]
    assert "300 unknown column(s)" in line and "and 292 more" in line and len(line) < 300


def test_a_symlinked_source_never_puts_its_target_in_notes_or_logs(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secrets_file = tmp_path / "elsewhere" / ".env"
    secrets_file.parent.mkdir()
    secrets_file.write_text("PASSOS_API_KEY=hunter2-top-secret\nLANGFUSE_SECRET_KEY=sk-lf-also-secret\n")
    pede_like = tmp_path / "elsewhere" / "other.csv"
    pede_like.write_text(HEADER + ",private-column-name\n" + ROW.format(i=1) + ",x\n")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "pede_2030.csv").symlink_to(secrets_file)
    (folder / "pede_2031.csv").symlink_to(pede_like)
    caplog.set_level(logging.DEBUG)
    with connect(settings) as con:
        results = {r.source: r for r in loader.ingest(con, "links", discover([folder]))}
        notes = " ".join(row[0] or "" for row in con.execute("select note from ingest_runs").fetchall())
    assert results["pede_2030.csv"].status == "failed" and "missing column" in results["pede_2030.csv"].note
    assert results["pede_2031.csv"].status == "loaded"
    logged = " ".join(r.getMessage() for r in caplog.records)
    for secret in ("hunter2", "PASSOS_API_KEY", "sk-lf", "private-column-name"):
        assert secret not in notes and secret not in logged


@pytest.mark.integration
def test_two_big_csvs_share_one_cell_budget_and_memory_stays_that_of_one(tmp_path: Path) -> None:
    """Each CSV is within the cell limit; together they are not, and both would be held at once."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    good_csv(one / "pede_2030.csv", 40_000)  # 480,012 cells
    shutil.copy(one / "pede_2030.csv", two / "pede_2030.csv")
    shutil.copy(one / "pede_2030.csv", two / "pede_2031.csv")
    budget = {"PASSOS_SOURCE_MAX_CELLS": "500000"}
    alone, peak_one = run_ingest(one, tmp_path / "home-one", **budget)
    assert alone["results"]["pede_2030.csv"]["loaded"] == 40_000
    both, peak_two = run_ingest(two, tmp_path / "home-two", **budget)
    assert both["results"]["pede_2030.csv"]["loaded"] == 40_000
    refused = both["results"]["pede_2031.csv"]
    assert refused["status"] == "failed" and "this ingest's budget of 500,000" in refused["note"]
    # Holding both costs about 80 MB more than one (399 vs 318 MB here); refused, the same as one.
    assert peak_two < peak_one + 30 * MB, f"two sources peaked at {peak_two / MB:.0f} MB, one at {peak_one / MB:.0f} MB"
