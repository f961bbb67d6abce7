"""The files that hold student records are the owner's and the group's only, whatever the umask.

The warehouse, the analysts' copy and the Parquet export are created mode 0640, and the folders
the project creates for them 0750: under a umask of 000 (which would leave them writable by all)
and of 077 (which would leave the group out) alike. docs/security.md says why.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from passos.file_modes import PRIVATE_FILE, PRIVATE_FOLDER, make_folders, restrict_file
from passos.settings import Settings
from tests.warehouse.test_loader import ingest, row, write_year
from warehouse import loader
from warehouse.analytics import refresh_analytics
from warehouse.connection import connect


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o000, 0o077], ids=["umask-000", "umask-077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    before = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(before)


def test_the_warehouse_its_copy_and_the_parquet_export_are_0640_in_0750_folders(
    settings: Settings, tmp_path: Path, umask: int
) -> None:
    assert not settings.home.exists()
    write_year(tmp_path / "in", 2030, [row("A")])
    ingest(settings, tmp_path / "in")
    with connect(settings) as con:
        exported = loader.export_parquet(con, settings.parquet_dir)
    refresh_analytics(settings)
    assert mode(settings.home) == PRIVATE_FOLDER == 0o750
    assert mode(settings.warehouse_path) == PRIVATE_FILE == 0o640
    assert mode(settings.analytics_path) == 0o640
    folders = [settings.parquet_dir, exported, *(p for p in exported.rglob("*") if p.is_dir())]
    files = [p for p in exported.rglob("*") if p.is_file()]
    assert files and all(p.suffix == ".parquet" for p in files)
    assert {str(p): oct(mode(p)) for p in folders} == {str(p): "0o750" for p in folders}
    assert {str(p): oct(mode(p)) for p in files} == {str(p): "0o640" for p in files}


def test_the_state_folders_are_created_0750(settings: Settings, umask: int) -> None:
    settings.ensure_writable()
    for folder in (settings.home, settings.parquet_dir, settings.models_dir, settings.reports_dir):
        assert mode(folder) == 0o750, folder


def test_a_warehouse_made_before_is_tightened_and_a_folder_made_by_its_owner_is_left_alone(
    settings: Settings, tmp_path: Path
) -> None:
    settings.home.mkdir(mode=0o755)
    os.chmod(settings.home, 0o755)
    with connect(settings):
        pass
    os.chmod(settings.warehouse_path, 0o666)
    with connect(settings):
        pass
    assert mode(settings.warehouse_path) == 0o640
    assert mode(settings.home) == 0o755  # not ours to change
    os.chmod(settings.warehouse_path, 0o600)
    with connect(settings):
        pass
    assert mode(settings.warehouse_path) == 0o600  # tighter than ours is kept
    with connect(settings, read_only=True):
        pass
    make_folders(tmp_path / "a" / "b")
    assert mode(tmp_path / "a") == mode(tmp_path / "a" / "b") == 0o750
    make_folders(tmp_path / "a" / "b")  # already there: nothing to do


def test_a_file_whose_mode_cannot_be_set_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    restrict_file(tmp_path / "gone.duckdb", new=True)
    assert "cannot set the mode of" in caplog.text and "gone.duckdb" in caplog.text
