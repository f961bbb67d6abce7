"""A CLI killed mid-command leaves no Prefect temporary server behind (kill -9 and SIGTERM)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.server_guard import SERVER_MARK, is_prefect_server, start_guarded_server, stop_server, watch

pytestmark = pytest.mark.integration


def _prefect_server_of(parent: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and is_prefect_server(int(entry.name)):
            return int(entry.name)
    return None


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_a_killed_cli_leaves_no_prefect_server(tmp_path: Path, real_data: Path, stop: signal.Signals) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env |= {"PASSOS_HOME": str(tmp_path / "home"), "PREFECT_HOME": str(tmp_path / "prefect")}
    log = (tmp_path / "cli.log").open("wb")
    cli = subprocess.Popen(
        [sys.executable, "-m", "cli", "ingest", "--source", str(real_data)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = None
    try:
        deadline = time.monotonic() + 90
        while server is None and time.monotonic() < deadline and cli.poll() is None:
            server = _prefect_server_of(cli.pid)
            time.sleep(0.05)
        assert server is not None, (tmp_path / "cli.log").read_text()[-2000:]
        assert cli.poll() is None, "the command ended before it could be killed"
        os.kill(cli.pid, stop)
        cli.wait(timeout=60)
        deadline = time.monotonic() + 20
        while is_prefect_server(server) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not is_prefect_server(server), f"Prefect's server {server} outlived the killed command"
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        if server is not None:
            stop_server(server)  # never leave one behind, even when the test fails
        log.close()


def test_stop_server_leaves_other_processes_alone() -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert not is_prefect_server(other.pid)
        assert stop_server(other.pid) is False and other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_the_watchdog_stops_only_the_servers_it_was_given_once_its_pipe_closes() -> None:
    import io

    lookalike = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", SERVER_MARK.decode()])
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)  # let both exec, so their command lines are readable
        assert is_prefect_server(lookalike.pid) and not is_prefect_server(bystander.pid)
        pipe = io.BytesIO(f"{lookalike.pid}\n{bystander.pid}\n".encode())
        assert watch(pipe) == [lookalike.pid]
        assert lookalike.wait(timeout=10) == -signal.SIGTERM
        assert bystander.poll() is None
    finally:
        for child in (lookalike, bystander):
            child.kill()
            child.wait()


def test_nothing_is_started_when_a_prefect_api_is_configured(prefect_harness: None) -> None:
    assert start_guarded_server() is None
