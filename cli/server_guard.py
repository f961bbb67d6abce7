"""Prefect's temporary API server never outlives the command that started it.

Without ``PREFECT_API_URL``, Prefect starts a temporary server (a uvicorn subprocess) on the first
flow run and stops it at exit. A process killed by SIGKILL never gets to exit, and one killed by
SIGTERM outside a flow run exits without its ``atexit`` hooks: the server would keep running,
holding a port and Prefect's database. So the CLI starts that server itself, before any flow
(Prefect then reuses it), together with a watchdog process that holds the read end of a pipe. When
the CLI ends, however it ends, the kernel closes the write end; the watchdog sees end-of-file and
stops the server if it is still running. It is run as ``python -m cli.server_guard`` and reads
the server's process id from the pipe.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)
SERVER_MARK = b"prefect.server.api.server:create_app"
# Prefect waits 20 s for its temporary server by default: too short on a busy 2-core machine. Used
# unless PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS is set.
STARTUP_TIMEOUT_S = 90
_watchdogs: list[subprocess.Popen[bytes]] = []


def is_prefect_server(pid: int) -> bool:
    """Whether ``pid`` is alive and is Prefect's temporary server (not a recycled process id)."""
    try:
        return SERVER_MARK in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop_server(pid: int, *, grace_s: float = 5.0) -> bool:
    """SIGTERM Prefect's server ``pid`` then, after ``grace_s``, SIGKILL. False when it was not running."""
    if not is_prefect_server(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not is_prefect_server(pid):
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True


def start_guarded_server() -> int | None:
    """Start Prefect's temporary server now, watched, when no ``PREFECT_API_URL`` is configured.

    Returns:
        The server's process id, or ``None`` when a Prefect API is configured (nothing to guard).
    """
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "cli.server_guard"],
        stdin=subprocess.PIPE,
        start_new_session=True,  # a Ctrl-C to the terminal does not reach it
    )
    _watchdogs.append(watchdog)  # the pipe stays open as long as this process lives
    server = SubprocessASGIServer()  # the instance Prefect's own client will reuse
    spawn = server._run_uvicorn_command

    def spawn_watched() -> subprocess.Popen[Any]:
        # Prefect 3.9 spawns (and may respawn on a busy port) through this method: each server
        # process is handed to the watchdog the moment it exists, before the health wait.
        process = spawn()
        assert watchdog.stdin is not None
        watchdog.stdin.write(f"{process.pid}\n".encode())
        watchdog.stdin.flush()
        return process

    server._run_uvicorn_command = spawn_watched  # type: ignore[method-assign]
    configured = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in os.environ
    server.start(timeout=None if configured else STARTUP_TIMEOUT_S)
    assert server.server_process is not None
    return server.server_process.pid


def watch(stdin: IO[bytes]) -> list[int]:
    """Read server process ids until ``stdin`` closes (the parent ended); stop those still running.

    Returns:
        The process ids that were still running and were stopped.
    """
    pids = [int(line) for line in stdin if line.strip().isdigit()]
    stopped = [pid for pid in pids if stop_server(pid)]
    for pid in stopped:
        log.warning("stopped Prefect's temporary server (pid %d) left by a command that ended abruptly", pid)
    return stopped


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s cli.server_guard: %(message)s")
    watch(sys.stdin.buffer)
