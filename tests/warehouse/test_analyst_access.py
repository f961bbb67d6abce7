"""An analyst's query (`passos sql`, `connect_analyst`) reads the analysts' database and nothing else.

Each test is an attack: reading a file of the host or of ``$PASSOS_HOME``, writing one, attaching
the warehouse to hold its lock, and undoing the configuration that forbids these.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from cli.app import app
from passos.errors import ExitCode
from passos.settings import Settings, get_settings
from warehouse.analytics import refresh_analytics
from warehouse.connection import connect, connect_analyst

PASSOS = Path(sys.executable).parent / "passos"


@pytest.fixture(scope="module")
def built_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home as `make run` leaves it: a 0600 salt, a champion pointer, a warehouse and its snapshot."""
    root = tmp_path_factory.mktemp("analyst") / "home"
    settings = Settings(home=root)
    root.mkdir(parents=True)
    settings.id_salt_file.write_text("s3cret-salt-of-the-install-0123456789\n", encoding="utf-8")
    settings.id_salt_file.chmod(0o600)
    pointer = settings.models_dir / "next_year" / "champion.json"
    pointer.parent.mkdir(parents=True)
    pointer.write_text('{"version": "v1"}\n', encoding="utf-8")
    with connect(settings):
        pass
    refresh_analytics(settings)
    return root


@pytest.fixture
def home(built_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """That home, seen by ``get_settings()`` and so by ``passos sql``."""
    monkeypatch.setenv("PASSOS_HOME", str(built_home))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def run_sql(query: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["sql", query, "--format", "csv"])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    "query",
    [
        "select * from read_text('/etc/passwd')",
        "select * from read_csv('/etc/passwd')",
        "select * from read_blob('/etc/hostname')",
        "select * from glob('/etc/*')",
        "select * from '/etc/passwd'",
    ],
)
def test_a_query_cannot_read_a_file_of_the_host(home: Settings, query: str) -> None:
    code, output = run_sql(query)
    assert code == ExitCode.USAGE and "root:" not in output, output


def test_a_query_cannot_read_the_salt(home: Settings) -> None:
    code, output = run_sql(f"select content from read_text('{home.id_salt_file}')")
    assert code == ExitCode.USAGE and "disabled by configuration" in output
    assert "s3cret" not in output


def test_copy_to_cannot_overwrite_a_champion_pointer_or_write_a_formula_csv(home: Settings, tmp_path: Path) -> None:
    pointer = home.models_dir / "next_year" / "champion.json"
    before = pointer.read_bytes()
    code, output = run_sql(
        f"copy (select '{{\"version\": \"evil\"}}' as v) to '{pointer}' (format csv, header false, quote '')"
    )
    assert code == ExitCode.USAGE and "disabled by configuration" in output
    assert pointer.read_bytes() == before
    formulas = tmp_path / "formulas.csv"
    code, output = run_sql(f"copy (select '=HYPERLINK(\"http://x\")' as f from range(6)) to '{formulas}'")
    assert code == ExitCode.USAGE and not formulas.exists()
    code, output = run_sql(f"export database '{tmp_path / 'dump'}'")
    assert code == ExitCode.USAGE and not (tmp_path / "dump").exists()


@pytest.mark.parametrize(
    "query",
    [
        "set enable_external_access = true",
        "reset enable_external_access",
        "set lock_configuration = false",
        "reset all",
        "pragma enable_external_access",
        "set allowed_directories = ['/']",
        "set temp_directory = '/tmp'",
        "pragma profiling_output = '/tmp/profile.json'",
        "set autoload_known_extensions = true",
    ],
)
def test_the_configuration_cannot_be_undone(home: Settings, query: str) -> None:
    code, output = run_sql(query)
    assert code == ExitCode.USAGE, output
    with connect_analyst(home.analytics_path) as con:
        with pytest.raises(duckdb.Error):
            con.execute(query)
        assert con.execute("select current_setting('enable_external_access')").fetchall() == [(False,)]


@pytest.mark.parametrize("query", ["install httpfs", "load httpfs", "install shellfs from community"])
def test_no_extension_can_be_installed_or_loaded(home: Settings, query: str) -> None:
    code, output = run_sql(query)
    assert code == ExitCode.USAGE, output


def test_the_snapshot_itself_is_read_only(home: Settings) -> None:
    for query in ("create table mine (x int)", "delete from students", "drop view at_risk"):
        code, output = run_sql(query)
        assert code == ExitCode.USAGE and "read-only" in output, output
    code, output = run_sql("select count(*) as n from at_risk")
    assert code == 0 and output == "n\n0\n"


def test_attach_of_the_warehouse_is_refused_and_refresh_is_never_blocked(home: Settings) -> None:
    """`ATTACH 'warehouse.duckdb'` plus a long query would hold the lock `passos refresh` needs (exit 4)."""
    attacker = subprocess.Popen(
        [
            str(PASSOS),
            "sql",
            f"attach '{home.warehouse_path}' as w (read_only); "
            "select count(*) from range(20000000000) a, w.information_schema.tables",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PASSOS_HOME": str(home.home)},
    )
    try:
        output, _ = attacker.communicate(timeout=60)
    finally:
        attacker.kill()
    assert attacker.returncode == ExitCode.USAGE and "disabled by configuration" in output, output
    started = time.perf_counter()
    refreshed = subprocess.run(
        [str(PASSOS), "refresh"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PASSOS_HOME": str(home.home), "PASSOS_WAREHOUSE_LOCK_RETRIES": "0"},
    )
    assert refreshed.returncode == 0, refreshed.stdout + refreshed.stderr
    assert time.perf_counter() - started < 60


def test_a_long_analyst_query_never_blocks_refresh(home: Settings) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from warehouse.connection import connect_analyst\n"
            "con = connect_analyst(Path(sys.argv[1])); print('open', flush=True); sys.stdin.read()",
            str(home.analytics_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        published = refresh_analytics(home)
        assert published.path == home.analytics_path
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_connect_analyst_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no analysts' database"):
        connect_analyst(tmp_path / "analytics.duckdb")


def test_the_settings_are_those_documented(home: Settings) -> None:
    with connect_analyst(home.analytics_path) as con:
        rows = dict(
            con.execute(
                "select name, value from duckdb_settings() where name in "
                "('enable_external_access', 'lock_configuration', 'access_mode', 'autoload_known_extensions')"
            ).fetchall()
        )
    assert rows == {
        "enable_external_access": "false",
        "lock_configuration": "true",
        "access_mode": "read_only",
        "autoload_known_extensions": "false",
    }


def test_a_query_cannot_fill_the_disk_or_raise_its_memory_cap(home: Settings) -> None:
    """Spilling would write `<analytics.duckdb>.tmp` beside the warehouse, up to 90 % of the free disk."""
    with connect_analyst(home.analytics_path) as con:
        caps = con.execute(
            "select current_setting('max_temp_directory_size'), current_setting('memory_limit')"
        ).fetchall()
        for query in ("set max_temp_directory_size = '100GB'", "set memory_limit = '100GB'", "reset memory_limit"):
            with pytest.raises(duckdb.Error, match="locked"):
                con.execute(query)
    assert caps == [("0 bytes", "3.7 GiB")]
    code, output = run_sql("select current_setting('max_temp_directory_size') as cap")
    assert code == 0 and output == "cap\n0 bytes\n", output
    assert not Path(f"{home.analytics_path}.tmp").exists()
