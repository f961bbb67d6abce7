"""The ingest flow end to end under a real Prefect test harness, and the CLI around it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from passos.settings import Settings

pytestmark = pytest.mark.integration

HEADER = "RA,Fase,Idade,Gênero,IAA,IEG,IPS,IDA,IPV,IAN,Defasagem,Fase Ideal"


def test_ingest_flow_reports_bad_files_and_loads_the_rest(
    prefect_harness: None, settings: Settings, tmp_path: Path
) -> None:
    from flows.ingest import ingest_flow

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "pede_2030.csv").write_text(f"{HEADER}\nA,ALFA,8,Menina,8,7,6,5,7,5,-1,ALFA\n", encoding="utf-8")
    (folder / "pede_2031.csv").write_bytes(b"RA;Fase\n1;2\n")
    summary = ingest_flow(sources=[str(folder)])
    by_source = {r["source"]: r for r in summary}
    assert by_source["pede_2030.csv"]["status"] == "loaded"
    assert by_source["pede_2031.csv"]["status"] == "failed"
    assert "separator" in by_source["pede_2031.csv"]["note"]
    assert (settings.parquet_dir / "students" / "year=2030").is_dir()


def test_cli_ingest_and_sql(prefect_harness: None, settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "pede_2030.csv").write_text(f"{HEADER}\nA,ALFA,8,Menina,8,7,6,5,7,5,-1,ALFA\n", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", "--source", str(folder)])
    assert result.exit_code == 0, result.output
    assert "pede_2030.csv" in result.output and "loaded" in result.output
    result = runner.invoke(app, ["sql", "select ra, fase, genero from students"])
    assert result.exit_code == 0 and "A" in result.output and "F" in result.output
    result = runner.invoke(app, ["sql", "select ra from students", "--format", "json"])
    assert result.output.strip() == '[{"ra":"A"}]'
    result = runner.invoke(app, ["sql", "select ra from students", "--format", "csv"])
    assert result.output == "ra\nA\n"
    result = runner.invoke(app, ["sql", "delete from students"])
    assert result.exit_code == 2 and "read-only" in result.output.lower()
    result = runner.invoke(app, ["sql", "select * from nowhere"])
    assert result.exit_code == 2 and "nowhere" in result.output


def test_every_command_has_help() -> None:
    runner = CliRunner()
    for args in (["--help"], ["ingest", "--help"], ["sql", "--help"], ["run", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Usage" in result.output


def test_an_unwritable_home_is_a_clear_error_at_startup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from passos.settings import get_settings

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where PASSOS_HOME should be")
    monkeypatch.setenv("PASSOS_HOME", str(blocker))
    get_settings.cache_clear()
    try:
        for command in (["ingest"], ["serve"], ["train"]):
            result = CliRunner().invoke(app, command)
            assert result.exit_code == 2, result.output
            assert "not writable" in result.output and str(blocker) in result.output
    finally:
        get_settings.cache_clear()


def test_a_held_warehouse_fails_the_flow_cleanly_and_writes_nothing(
    prefect_harness: None, settings: Settings, tmp_path: Path
) -> None:
    import subprocess
    import sys

    import duckdb

    from flows.ingest import ingest_flow
    from passos.errors import WarehouseBusyError
    from warehouse.connection import connect

    with connect(settings):
        pass  # an empty warehouse with its schema
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "pede_2030.csv").write_text(f"{HEADER}\nA,ALFA,8,Menina,8,7,6,5,7,5,-1,ALFA\n", encoding="utf-8")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(60)",
            str(settings.warehouse_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        state = ingest_flow(sources=[str(folder)], return_state=True)
        assert state.is_failed()
        with pytest.raises(WarehouseBusyError, match="locked by another process"):
            state.result()
    finally:
        holder.kill()
        holder.wait()
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        assert con.execute("select count(*) from students").fetchall() == [(0,)]
        assert con.execute("select count(*) from ingest_runs").fetchall() == [(0,)]


def test_formulas_in_ids_are_quarantined_and_csv_output_is_neutralised(
    prefect_harness: None, settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    rows = [
        'RA-1,ALFA,=HYPERLINK("http://evil"),8,Menina,8,7,6,5,7,5,-1,ALFA',
        "=cmd|' /C calc'!A0,ALFA,1A,8,Menina,8,7,6,5,7,5,-1,ALFA",
        "@SUM(1+1),ALFA,1A,8,Menina,8,7,6,5,7,5,-1,ALFA",
    ]
    header = HEADER.replace("RA,Fase,", "RA,Fase,Turma,")
    (folder / "pede_2030.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", "--source", str(folder)]).exit_code == 0
    result = runner.invoke(app, ["sql", "select ra, turma, defasagem from students", "--format", "csv"])
    assert result.exit_code == 0 and result.output == 'ra,turma,defasagem\nRA-1,"\'=HYPERLINK(""http://evil"")",-1\n'
    result = runner.invoke(app, ["sql", "select line, reason from quarantine order by line", "--format", "json"])
    quarantined = json.loads(result.output)
    assert [q["line"] for q in quarantined] == [3, 4], quarantined
    assert all(q["reason"].startswith("RA is not an id") for q in quarantined)


def test_the_flow_passes_file_names_between_tasks_not_rows(real_data: Path) -> None:
    import pickle

    from flows.ingest import list_sources_task

    files = list_sources_task.fn([str(real_data), str(real_data / "missing")])
    assert all(isinstance(f, str) for f in files) and str(real_data / "pede_2024.csv") in files
    assert len(pickle.dumps(files)) < 2_000  # the rows (about 1 MB here) are read by the load task
