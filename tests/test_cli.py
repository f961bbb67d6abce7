"""The CLI fails fast and clearly: arguments checked before any flow starts, one line per expected
error, and the exit codes of the contract (passos.errors.ExitCode, README "Operating it")."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from cli.base import _Typer
from passos.errors import ExitCode, ModelNotFoundError, WarehouseBusyError
from passos.settings import Settings

PASSOS = Path(sys.executable).parent / "passos"
HEADER = "RA,Fase,Idade,Gênero,IAA,IEG,IPS,IDA,IPV,IAN,Defasagem,Fase Ideal"


def passos(home: Path, *args: str, **env: str) -> tuple[int, str, float]:
    """Run the installed ``passos`` script in a child process: exit code, stdout + stderr, seconds."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(PASSOS), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PASSOS_HOME": str(home), **env},
    )
    return done.returncode, done.stdout + done.stderr, time.perf_counter() - started


def test_a_misspelt_task_is_refused_at_once_without_a_traceback(tmp_path: Path) -> None:
    code, output, seconds = passos(tmp_path / "home", "train", "--task", "curent")
    assert code == ExitCode.USAGE
    assert "Traceback" not in output and "curent" in output and "next_year" in output
    assert seconds < 8, f"took {seconds:.1f} s: the bound is 8 s"  # no Prefect server was started


def test_a_missing_source_folder_exits_non_zero(tmp_path: Path) -> None:
    code, output, _ = passos(tmp_path / "home", "ingest", "--source", "/no/such/dir")
    assert code == ExitCode.USAGE
    assert "does not exist" in output and "Traceback" not in output


def test_a_busy_warehouse_is_one_line_and_exit_4(settings: Settings) -> None:
    from warehouse.connection import connect

    with connect(settings):
        pass
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); sys.stdin.read()",
            str(settings.warehouse_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code, output, _ = passos(settings.home, "refresh", PASSOS_WAREHOUSE_LOCK_RETRIES="0")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert code == ExitCode.WAREHOUSE_BUSY, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "locked by another process" in errors[0]
    assert "Traceback" not in output


def test_a_failed_source_makes_ingest_exit_3_and_keeps_the_others(
    prefect_harness: None, settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "pede_2030.csv").write_text(f"{HEADER}\nA,ALFA,8,Menina,8,7,6,5,7,5,-1,ALFA\n", encoding="utf-8")
    (folder / "pede_2031.csv").write_bytes(b"RA;Fase\n1;2\n")
    result = CliRunner().invoke(app, ["--quiet", "ingest", "--source", str(folder)])
    assert result.exit_code == ExitCode.INPUT_FAILED, result.output
    assert "1 of 2 sources failed to load (pede_2031.csv)" in result.output
    loaded = CliRunner().invoke(app, ["sql", "select ra from students", "--format", "csv"])
    assert loaded.exit_code == 0 and loaded.output == "ra\nA\n"  # the analysts' database has the good file


def test_sql_without_an_analysts_database_says_what_to_run(settings: Settings) -> None:
    result = CliRunner().invoke(app, ["sql", "select 1"])
    assert result.exit_code == ExitCode.USAGE and "run `passos ingest` first" in result.output
    from warehouse.connection import connect

    with connect(settings):
        pass
    result = CliRunner().invoke(app, ["sql", "select 1"])
    assert result.exit_code == ExitCode.USAGE and "run `passos refresh`" in result.output
    refreshed = CliRunner().invoke(app, ["refresh"])
    assert refreshed.exit_code == 0 and "analytics.duckdb" in refreshed.output
    result = CliRunner().invoke(app, ["sql", "select count(*) as n from at_risk", "--format", "json"])
    assert result.exit_code == 0 and result.output.strip() == '[{"n":0}]'
    bad = CliRunner().invoke(app, ["sql", "selec 1"])
    # one error line, then DuckDB's query line and the caret under the mistake (tests/test_cli_text.py)
    assert bad.exit_code == ExitCode.USAGE and bad.output.strip().splitlines()[0].startswith("error: ")
    assert "Traceback" not in bad.output and len(bad.output.strip().splitlines()) == 3


@pytest.mark.parametrize(
    "args",
    [
        ["--quiet", "--verbose", "models", "list"],
        ["sql", "select 1", "--format", "xml"],
        ["run", "--min-recall", "1.5"],
        ["score", "--task", "all"],
        ["batch-score", "--source", "/no/such/file.parquet"],
        ["run", "--data-dir", "/no/such/dir"],
    ],
)
def test_bad_arguments_are_usage_errors(settings: Settings, args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == ExitCode.USAGE, result.output


def test_every_command_gets_the_error_handling() -> None:
    demo = _Typer()

    @demo.command()
    def busy() -> None:
        raise WarehouseBusyError("warehouse x is locked by another process")

    @demo.command()
    def missing() -> None:
        raise ModelNotFoundError("no champion for task 'current'")

    @demo.command()
    def bug() -> None:
        raise RuntimeError("a bug")

    runner = CliRunner()
    busy_result = runner.invoke(demo, ["busy"])
    assert busy_result.exit_code == ExitCode.WAREHOUSE_BUSY and "error: warehouse x is locked" in busy_result.output
    missing_result = runner.invoke(demo, ["missing"])
    assert missing_result.exit_code == ExitCode.USAGE
    assert missing_result.output.strip() == "error: no champion for task 'current'"
    bug_result = runner.invoke(demo, ["bug"])
    assert bug_result.exit_code == ExitCode.BUG and isinstance(bug_result.exception, RuntimeError)


def test_exit_codes_are_the_documented_contract() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert {int(c) for c in ExitCode} == {0, 1, 2, 3, 4, 5, 6, 10, 11, 12}
    for code in ExitCode:
        assert f"| {int(code)} |" in readme, f"exit code {int(code)} is not in README's table"


def test_verbosity_sets_prefect_logging_and_the_command_end_undoes_it() -> None:
    import logging

    from cli.base import Verbosity, configure_prefect_logging, restore_logging, setup_logging

    prefect = logging.getLogger("prefect.flow_runs")
    before = (prefect.level, logging.getLogger().level)
    setup_logging(Verbosity.QUIET)
    configure_prefect_logging()
    assert prefect.level == logging.CRITICAL and logging.getLogger().level == logging.WARNING
    restore_logging()
    assert (prefect.level, logging.getLogger().level) == before

    handler = logging.Handler()
    logging.getLogger().addHandler(handler)
    try:
        setup_logging(Verbosity.NORMAL)
        configure_prefect_logging()
        try:
            raise WarehouseBusyError("busy")
        except WarehouseBusyError:
            expected = logging.LogRecord("prefect.flow_runs", logging.ERROR, "", 0, "failed", None, sys.exc_info())
        try:
            raise RuntimeError("a bug")
        except RuntimeError:
            bug = logging.LogRecord("prefect.flow_runs", logging.ERROR, "", 0, "failed", None, sys.exc_info())
        assert handler.filter(expected) and expected.exc_info is None  # the message stays, the traceback goes
        assert handler.filter(bug) and bug.exc_info is not None  # a bug keeps its traceback
        restore_logging()
        assert handler.filters == []
        setup_logging(Verbosity.VERBOSE)
        configure_prefect_logging()
        assert handler.filters == []  # --verbose shows everything
    finally:
        restore_logging()
        logging.getLogger().removeHandler(handler)
