"""`passos sql --max-rows N` reads at most N + 1 rows of the result, however large the result is.

The peak memory is the child process's own high-water mark (``VmHWM``, sampled every 50 ms); a
guard kills the child past a bound, so a regression fails the test instead of filling the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from cli.app import app
from passos.settings import Settings
from tests.support.processes import peak_memory

PASSOS = Path(sys.executable).parent / "passos"
MB = 1024 * 1024
KILL_BOUND = 1_500_000_000
# 500 rows of 1 MB each: printing the whole result would hold it at least once (500 MB).
LARGE = "select i, repeat('x', 1000000) as blob from range(500) t(i)"


def run_sql(home: Path, *args: str) -> tuple[int, str, int]:
    """``passos sql ARGS`` in a child process: its exit code, stdout + stderr and peak RSS in bytes."""
    child = subprocess.Popen(
        [str(PASSOS), "sql", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PASSOS_HOME": str(home)},
    )
    with peak_memory(child.pid, kill_above=KILL_BOUND) as high:
        output, _ = child.communicate(timeout=120)
    return child.returncode, output.decode(), high[0]


@pytest.mark.integration
def test_max_rows_reads_only_the_rows_it_prints(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    duckdb.connect(str(home / "analytics.duckdb")).close()
    code, _, baseline = run_sql(home, "select 1 as one")
    assert code == 0 and baseline > 0
    code, output, peak = run_sql(home, LARGE, "--max-rows", "1")
    assert code == 0, output
    # The result is 500 MB; holding two of its rows costs 2 MB. 100 MB leaves room for DuckDB's
    # buffers and the allocator, and is a fifth of the result: a copy of it cannot pass.
    assert peak - baseline < 100 * MB, f"peak {peak / MB:.0f} MB against {baseline / MB:.0f} MB for `select 1`"
    lines = output.strip().splitlines()
    assert lines[0].split() == ["i", "blob"] and lines[1].split()[0] == "0"
    assert lines[-1] == "... more than 1 row: showing the first 1 (raise --max-rows, or --format csv for all)"


def test_max_rows_keeps_the_order_and_says_when_rows_were_cut(settings: Settings) -> None:
    settings.home.mkdir(parents=True)
    duckdb.connect(str(settings.analytics_path)).close()
    query = "select * from range(3) t(i) order by i desc"
    every = CliRunner().invoke(app, ["sql", query, "--max-rows", "3"])
    assert every.exit_code == 0 and every.output.split() == ["i", "2", "1", "0"]
    cut = CliRunner().invoke(app, ["sql", query, "--max-rows", "2"])
    assert cut.exit_code == 0 and cut.output.splitlines()[:3] == [" i", " 2", " 1"]
    assert cut.output.splitlines()[-1].startswith("... more than 2 rows: showing the first 2")
    whole = CliRunner().invoke(app, ["sql", query, "--max-rows", "2", "--format", "csv"])
    assert whole.exit_code == 0 and whole.output.split() == ["i", "2", "1", "0"]  # the cap is for the table only
    silent = CliRunner().invoke(app, ["sql", "begin transaction"])
    assert silent.exit_code == 0 and silent.output == ""
