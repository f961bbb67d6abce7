"""An interrupted ingest is recorded in ``ingest_runs``: stopped, failed, or killed and found at the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from prefect.exceptions import TerminationSignal

from passos.settings import Settings
from warehouse import loader
from warehouse.connection import connect
from warehouse.sources import discover

HEADER = "RA,Fase,Idade,Gênero,IAA,IEG,IPS,IDA,IPV,IAN,Defasagem,Fase Ideal"
ROW = "RA-1,FASE 2,11,Feminino,8.5,7,6,5.5,7.1,5,-1,Fase 3 (7º e 8º ano)"

# SIGINT restored as in a terminal: a parallel test worker starts its children with it ignored.
HOLD = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
from warehouse import loader
from warehouse.connection import connect
with connect() as con, loader.tracked_run(con, sys.argv[1], "1 source file(s)"):
    print("running", flush=True)
    time.sleep(120)
"""


def runs(settings: Settings) -> list[tuple[str, str, str]]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute("select run_id, source, status, note from ingest_runs order by started_at").fetchall()


def folder_with_one_file(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    (folder / "pede_2030.csv").write_text(f"{HEADER}\n{ROW}\n", encoding="utf-8")
    return folder


def test_a_finished_run_leaves_only_its_sources(settings: Settings, tmp_path: Path) -> None:
    with connect(settings) as con, loader.tracked_run(con, "r1", "1 source file(s)"):
        loader.ingest(con, "r1", discover([folder_with_one_file(tmp_path)]))
    assert [(r[1], r[2]) for r in runs(settings)] == [("pede_2030.csv", "loaded")]


@pytest.mark.parametrize(
    ("stop", "status", "name"),
    [
        (KeyboardInterrupt(), "interrupted", "KeyboardInterrupt"),
        (TerminationSignal(signal.SIGTERM), "interrupted", "TerminationSignal"),  # Prefect's SIGTERM
        (ValueError("a bug"), "failed", "ValueError"),
    ],
)
def test_a_stopped_run_is_recorded(settings: Settings, stop: BaseException, status: str, name: str) -> None:
    with pytest.raises(type(stop)), connect(settings) as con, loader.tracked_run(con, "r2", "2 source file(s)"):
        raise stop
    assert runs(settings) == [("r2", loader.RUN_ROW, status, f"{status} by {name}; 2 source file(s)")]


def _hold(settings: Settings) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, "held"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PASSOS_HOME": str(settings.home)},
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "running"
    return child


def test_ctrl_c_in_a_real_process_records_interrupted(settings: Settings) -> None:
    child = _hold(settings)
    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=30) != 0
    assert runs(settings) == [
        ("held", loader.RUN_ROW, "interrupted", "interrupted by KeyboardInterrupt; 1 source file(s)")
    ]


def test_a_killed_run_is_marked_interrupted_by_the_next(settings: Settings, tmp_path: Path) -> None:
    child = _hold(settings)
    child.kill()  # kill -9: no handler runs, the row stays `running`
    child.wait(timeout=30)
    assert [r[2] for r in runs(settings)] == ["running"]
    with connect(settings) as con, loader.tracked_run(con, "next", "1 source file(s)"):
        loader.ingest(con, "next", discover([folder_with_one_file(tmp_path)]))
    (killed, loaded) = runs(settings)
    assert killed[:3] == ("held", loader.RUN_ROW, "interrupted") and "found by run next" in killed[3]
    assert loaded[1:3] == ("pede_2030.csv", "loaded")
