"""Promotion while the warehouse is busy: the pointer is the truth, the mirror catches up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from modeling.registry import Registry
from modeling.registry_mirror import stale_tasks, sync_mirror
from passos.settings import Settings
from tests.factories import register_model

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    """A registry with two accepted versions per task, the first champion; the mirror in step."""
    home = tmp_path_factory.mktemp("mirror-home")
    registry = Registry(home / "models")
    made: dict[str, list[str]] = {}
    for task in ("current", "next_year"):
        made[task] = [register_model(registry, task, seed=s) for s in (0, 1)]
        registry.promote(task, made[task][0], reason="setup")
    return home, made


@pytest.fixture
def home(versions: tuple[Path, dict[str, list[str]]], tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "home"
    shutil.copytree(versions[0], target)
    sync_mirror(Settings(home=target))
    return target


def _env(home: Path) -> dict[str, str]:
    return os.environ | {"PASSOS_HOME": str(home), "PASSOS_WAREHOUSE_LOCK_WAIT_S": "0.2"}


@pytest.fixture
def busy_warehouse(home: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the warehouse open for writing (DuckDB: one writer per file)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(120)",
            str(home / "warehouse.duckdb"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    try:
        yield holder
    finally:
        holder.kill()
        holder.wait(timeout=10)


def _mirror_champions(home: Path) -> dict[str, str]:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        rows = con.execute("select task, version from model_registry where is_champion").fetchall()
    finally:
        con.close()
    return dict(rows)


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "models", *args],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_promote_while_the_warehouse_is_busy_succeeds_and_says_the_mirror_is_stale(
    home: Path, versions: tuple[Path, dict[str, list[str]]], busy_warehouse: subprocess.Popen[str]
) -> None:
    new = versions[1]["current"][1]
    started = time.monotonic()
    result = _cli(home, "promote", new)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert f"current: champion is now {new}" in result.stdout
    assert "warehouse is busy" in result.stderr and "passos models sync" in result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 15, f"promote took {elapsed:.1f} s"
    assert Registry(home / "models").champion("current") == new

    busy_warehouse.kill()
    busy_warehouse.wait(timeout=10)
    assert _mirror_champions(home)["current"] == versions[1]["current"][0]  # stale, as warned
    synced = _cli(home, "sync")
    assert synced.returncode == 0 and "stale for current" in synced.stdout, synced.stdout + synced.stderr
    assert _mirror_champions(home)["current"] == new
    assert "it already agreed" in _cli(home, "sync").stdout


def test_sync_while_busy_exits_4(home: Path, busy_warehouse: subprocess.Popen[str]) -> None:
    result = _cli(home, "sync")
    assert result.returncode == 4 and "locked by another process" in result.stderr
    assert "Traceback" not in result.stderr


def test_kill_9_mid_promote_leaves_a_whole_pointer_and_the_next_write_reconciles(
    home: Path, versions: tuple[Path, dict[str, list[str]]], busy_warehouse: subprocess.Popen[str]
) -> None:
    made = versions[1]
    registry = Registry(home / "models")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "models", "promote", made["current"][1]],
        env=_env(home) | {"PASSOS_WAREHOUSE_LOCK_WAIT_S": "30"},  # stays in the retry, after the switch
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while registry.champion("current") != made["current"][1]:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    pointer = json.loads(registry.pointer_path("current").read_text())  # whole, not torn
    assert pointer["version"] == made["current"][1]
    busy_warehouse.kill()
    busy_warehouse.wait(timeout=10)

    settings = Settings(home=home)
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        assert stale_tasks(con, registry) == ["current"]
    finally:
        con.close()
    # The next registry write (here a promotion of the other task) rebuilds the whole mirror.
    result = _cli(home, "promote", made["next_year"][1])
    assert result.returncode == 0 and "busy" not in result.stderr, result.stderr
    assert _mirror_champions(home) == {"current": made["current"][1], "next_year": made["next_year"][1]}
