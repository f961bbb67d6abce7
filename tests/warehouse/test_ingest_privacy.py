"""What an ingest may keep of a bad row or a misplaced file: no personal value, no content of a linked file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from passos.settings import Settings
from warehouse import loader
from warehouse.analytics import refresh_analytics
from warehouse.connection import connect
from warehouse.sources import discover

HEADER = "RA,Fase,Idade,Gênero,Data de Nasc,IAA,IEG,IPS,IDA,IPV,IAN,Defasagem,Fase Ideal"
ROW = "RA-{i},FASE 2,11,Feminino,2013-05-17,8.5,7,6,5.5,7.1,5,-1,Fase 3 (7º e 8º ano)"


def test_a_row_with_an_extra_cell_keeps_no_birth_date_in_quarantine(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shifted = ROW.format(i=2).replace("Feminino,", "Feminino,extra,")  # the birth date moves one column right
    short = ",".join(ROW.format(i=3).split(",")[:6])
    (folder / "pede_2030.csv").write_text("\n".join([HEADER, ROW.format(i=1), shifted, short]) + "\n")
    with connect(settings) as con:
        [result] = loader.ingest(con, "width", discover([folder]))
        raws = [r[0] for r in con.execute("select raw from quarantine order by line").fetchall()]
        reasons = [r[0] for r in con.execute("select reason from quarantine order by line").fetchall()]
    assert (result.rows_loaded, result.rows_quarantined) == (1, 2)
    assert reasons == ["row has 14 fields, header has 13", "row has 6 fields, header has 13"]
    assert not any("2013-05-17" in raw or "RA-" in raw for raw in raws), raws
    assert "values withheld" in raws[0]


def test_a_file_in_a_symlinked_folder_never_quotes_its_header_in_logs(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "pede_2030.csv").write_text(f"{HEADER},SECRET_TOKEN=hunter2\n{ROW.format(i=1)},x\n")
    linked = tmp_path / "in"
    linked.symlink_to(elsewhere, target_is_directory=True)  # the folder is the link, not the file
    caplog.set_level(logging.DEBUG)
    with connect(settings) as con:
        [result] = loader.ingest(con, "linked", discover([linked]))
        notes = " ".join(row[0] or "" for row in con.execute("select note from ingest_runs").fetchall())
    assert result.status == "loaded"
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "hunter2" not in logged and "SECRET_TOKEN" not in logged and "hunter2" not in notes
    assert "names withheld" in logged


def test_refresh_removes_the_staging_files_a_killed_refresh_left(settings: Settings) -> None:
    with connect(settings):
        pass
    settings.home.mkdir(parents=True, exist_ok=True)
    left = [settings.home / ".analytics-dead0001.tmp", settings.home / ".analytics-dead0001.tmp.wal"]
    for path in left:
        path.write_bytes(b"half a database")
    refresh_analytics(settings)
    assert not [p.name for p in settings.home.iterdir() if p.name.startswith(".analytics-")]
    assert settings.analytics_path.exists()
