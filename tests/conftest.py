"""Test configuration: an isolated Prefect home and test harness, settings per test, the real data."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from passos.settings import PROJECT_ROOT, Settings, get_settings
from tests.support.homes import TrainedHome, build_trained_home, shared_trained_home
from tests.support.prefect import discard_stale_events_workers, stale_events_workers

REAL_DATA = Path(os.environ.get("PASSOS_TEST_DATA", PROJECT_ROOT.parent / "shared" / "data"))


def pytest_configure(config: pytest.Config) -> None:
    prefect_home = tempfile.mkdtemp(prefix="passos-prefect-")
    os.environ.update(
        {
            "PREFECT_HOME": prefect_home,
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
            "PREFECT_LOGGING_TO_API_ENABLED": "false",
            "LANGFUSE_TRACING_ENABLED": "false",
            "PASSOS_ID_SALT": "a-salt-for-the-tests",  # the service refuses to start without one
        }
    )
    os.environ.pop("PASSOS_HOME", None)
    os.environ.pop("PASSOS_API_KEY", None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every test its own node id: schemathesis names its test per API operation alike.

    pytest-xdist (``make test`` runs two workers) schedules tests by node id: tests sharing one
    would collapse into a single test, and most of the fuzzing would silently not run.
    """
    for item in items:
        if item.parent is not None and item.nodeid.rpartition("::")[2] != item.name:
            item._id = item.parent.id.child(item.name)  # type: ignore[attr-defined]  # pytest keeps no setter
    seen: set[str] = set()
    shared = {item.nodeid for item in items if item.nodeid in seen or seen.add(item.nodeid)}
    if shared:
        raise pytest.UsageError(f"tests share a node id, so a parallel run would skip some: {sorted(shared)}")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test harness (a real temporary API server) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings whose state root is a fresh temporary folder (also seen by ``get_settings()``)."""
    monkeypatch.setenv("PASSOS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PASSOS_WAREHOUSE_LOCK_WAIT_S", "0.05")
    monkeypatch.setenv("PASSOS_WAREHOUSE_LOCK_RETRIES", "2")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real PEDE files; tests marked ``data`` skip when they are absent."""
    if not (REAL_DATA / "pede_2022.csv").exists():
        pytest.skip(f"real data not found in {REAL_DATA}")
    return REAL_DATA


@pytest.fixture(scope="session")
def trained_home(prefect_harness: None, real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedHome:
    """``passos run``'s pipeline on the real files, once per run: real champions for behavioural tests.

    Built once however many pytest-xdist workers run (their temporary folders share a parent); each
    worker reads its own copy. A test that changes a home works on ``trained_home.copy_to(tmp_path / "home")``.
    """
    own = tmp_path_factory.mktemp("trained-home")
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build_trained_home(own, real_data)
    return shared_trained_home(tmp_path_factory.getbasetemp().parent / "trained-home-golden", own, real_data)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    """Fail the test whose teardown left a Prefect events worker sending to a server that has stopped.

    Every later event of the process would retry against the dead address, seconds each, and the
    suite would not end after its last test (``tests.support.prefect.prefect_api`` is the way to
    call a test server in-process).
    """
    yield
    stale = stale_events_workers()
    if stale:
        discard_stale_events_workers()  # reported below; the tests after this one start clean
        raise AssertionError(f"{item.nodeid} left a Prefect events worker sending to a stopped server: {stale}")
