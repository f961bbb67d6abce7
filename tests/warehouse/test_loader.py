"""Loading into a real DuckDB file: idempotency, atomic replacement, the rows invariant, contracts."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from passos.errors import WarehouseBusyError
from passos.settings import Settings
from warehouse import loader
from warehouse.connection import connect
from warehouse.contracts import CONTRACTS
from warehouse.sources import discover

HEADER = "RA,Fase,Idade,Gênero,IAA,IEG,IPS,IDA,IPV,IAN,INDE 2030,Defasagem,Fase Ideal"


def row(ra: str, iaa: str = "8.5", inde: str = "7.0") -> str:
    return f"{ra},FASE 2,11,Feminino,{iaa},7,6,5.5,7.1,5,{inde},-1,Fase 3 (7º e 8º ano)"


def write_year(folder: Path, year: int, rows: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"pede_{year}.csv"
    path.write_text("\n".join([HEADER.replace("2030", str(year)), *rows]) + "\n", encoding="utf-8")
    return path


def ingest(settings: Settings, *paths: Path) -> list[loader.LoadResult]:
    with connect(settings) as con:
        return loader.ingest(con, "run", discover(list(paths)))


def counts(settings: Settings) -> dict[str, object]:
    with connect(settings, read_only=True) as con:
        return {
            t: con.execute(f"select count(*) from {t}").fetchall()[0][0]
            for t in ("students", "quarantine", "data_quality")
        } | {"rows": con.execute("select * from students order by year, ra").fetchall()}


def test_contracts_match_the_sql(settings: Settings) -> None:
    with connect(settings) as con:
        for name, columns in CONTRACTS.items():
            described = [r[0] for r in con.execute(f"describe {name}").fetchall()]
            assert tuple(described) == columns, name


def test_rows_in_equal_loaded_plus_quarantined(settings: Settings, tmp_path: Path) -> None:
    write_year(tmp_path / "in", 2030, [row("A"), row("B", iaa="12"), row("C", inde="INCLUIR"), row("A")])
    (result,) = ingest(settings, tmp_path / "in")
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined, result.dq_issues) == (4, 2, 2, 1)
    assert counts(settings)["quarantine"] == 2
    with connect(settings, read_only=True) as con:
        reasons = con.execute("select line, reason from quarantine order by line").fetchall()
    assert reasons == [(3, "iaa = 12.0 outside 0-10"), (5, "duplicate RA 'A' (first on line 2)")]


def test_ingesting_the_same_file_twice_changes_nothing(settings: Settings, tmp_path: Path) -> None:
    write_year(tmp_path / "in", 2030, [row("A"), row("B", iaa="12")])
    ingest(settings, tmp_path / "in")
    before = counts(settings)
    (again,) = ingest(settings, tmp_path / "in")
    assert again.status == "unchanged" and (again.rows_loaded, again.rows_quarantined) == (1, 1)
    assert counts(settings) == before


def test_a_changed_file_replaces_its_year_only(settings: Settings, tmp_path: Path) -> None:
    write_year(tmp_path / "in", 2030, [row("A"), row("B")])
    write_year(tmp_path / "in", 2031, [row("A"), row("C")])
    ingest(settings, tmp_path / "in")
    write_year(tmp_path / "in", 2030, [row("Z")])
    results = ingest(settings, tmp_path / "in")
    assert [r.status for r in results] == ["loaded", "unchanged"]
    assert [(r[0], r[1]) for r in counts(settings)["rows"]] == [("Z", 2030), ("A", 2031), ("C", 2031)]


def test_a_failed_load_leaves_the_previous_year_in_place(settings: Settings, tmp_path: Path) -> None:
    write_year(tmp_path / "in", 2030, [row("A")])
    ingest(settings, tmp_path / "in")
    before = counts(settings)
    (tmp_path / "in" / "pede_2030.csv").write_text("Aluno,Nota\nx,1\n", encoding="utf-8")
    (result,) = ingest(settings, tmp_path / "in")
    assert result.status == "failed" and "missing column" in result.note
    assert counts(settings) == before


def test_a_year_offered_twice_is_loaded_once_csv_first(settings: Settings, tmp_path: Path) -> None:
    import openpyxl

    write_year(tmp_path / "in", 2030, [row("A"), row("B")])
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "PEDE2030"
    for line in [HEADER, row("A"), row("B")]:
        sheet.append(line.split(","))
    book.save(tmp_path / "in" / "book.xlsx")
    results = ingest(settings, tmp_path / "in")
    assert [(r.source, r.status) for r in results] == [("pede_2030.csv", "loaded"), ("book.xlsx[PEDE2030]", "skipped")]
    assert "agrees: 2 of 2 rows identical" in results[1].note
    assert counts(settings)["students"] == 2


def test_a_bad_csv_falls_back_to_the_workbook_for_that_year(settings: Settings, tmp_path: Path) -> None:
    import openpyxl

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "pede_2030.csv").write_text("Aluno,Nota\nx,1\n", encoding="utf-8")
    book = openpyxl.Workbook()
    book.active.title = "PEDE2030"
    for line in [HEADER, row("A")]:
        book.active.append(line.split(","))
    book.save(tmp_path / "in" / "book.xlsx")
    results = ingest(settings, tmp_path / "in")
    assert [(r.source, r.status) for r in results] == [("pede_2030.csv", "failed"), ("book.xlsx[PEDE2030]", "loaded")]


def test_parquet_export_is_partitioned_by_year(settings: Settings, tmp_path: Path) -> None:
    write_year(tmp_path / "in", 2030, [row("A")])
    write_year(tmp_path / "in", 2031, [row("A"), row("B")])
    ingest(settings, tmp_path / "in")
    with connect(settings) as con:
        out = loader.export_parquet(con, settings.parquet_dir)
        out = loader.export_parquet(con, settings.parquet_dir)  # a second export replaces the first
    assert sorted(p.name for p in out.iterdir()) == ["year=2030", "year=2031"]
    n = duckdb.sql(f"select count(*) from read_parquet('{out}/*/*.parquet', hive_partitioning=true)").fetchall()
    assert n == [(3,)]


def test_a_held_warehouse_fails_cleanly_after_retries(settings: Settings) -> None:
    import subprocess
    import sys
    import time

    with connect(settings):
        pass
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,time; c=duckdb.connect({str(settings.warehouse_path)!r}); print('ok', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        started = time.monotonic()
        with pytest.raises(WarehouseBusyError, match="locked by another process after 3 attempts"), connect(settings):
            pass
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()


def test_read_only_without_a_warehouse_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(FileNotFoundError, match="passos ingest"), connect(settings, read_only=True):
        pass
