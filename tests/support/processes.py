"""Child processes started by tests: stopping them, and a real ``passos serve`` on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.support.net import answers, free_port, wait_until


def memory_field(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` memory field (``VmHWM``, ``VmRSS``) in bytes; 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@contextmanager
def peak_memory(pid: int, *, kill_above: int) -> Iterator[list[int]]:
    """Sample a child's own high-water mark (``VmHWM``) every 50 ms inside the block; kill it past ``kill_above``.

    Yields a one-item list holding the peak in bytes so far (read it after the block). ``wait4``'s
    ``ru_maxrss`` is not used: Linux counts the parent's size at fork in it.
    """
    done = threading.Event()
    high = [0]

    def guard() -> None:
        while not done.is_set():
            high[0] = max(high[0], memory_field(pid, "VmHWM"))
            if memory_field(pid, "VmRSS") > kill_above:
                os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=guard, daemon=True)
    watcher.start()
    try:
        yield high
    finally:
        done.set()
        watcher.join(timeout=5)


def stop(
    process: subprocess.Popen[bytes] | subprocess.Popen[str], *, sig: int = signal.SIGTERM, timeout: float = 30
) -> int:
    """Signal a process we started, then kill it if it does not exit in time; its exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait(timeout=10)


@dataclass
class ServedProcess:
    """A ``passos serve`` child process on a loopback port."""

    port: int
    home: Path
    process: subprocess.Popen[str]
    output: str | None = None  # set by the first ``stop()``

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, *, timeout: float = 30) -> str:
        """SIGTERM (as an orchestrator stops it), kill after ``timeout``; its captured output ('' if none)."""
        if self.output is not None:
            return self.output
        if self.process.poll() is None:
            self.process.terminate()
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        self.output = out or ""
        return self.output


def start_serve(
    home: Path,
    *,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
    output: int | IO[bytes] | None = subprocess.PIPE,
    timeout: float = 90,
) -> ServedProcess:
    """Start ``passos serve`` on a free port over ``home`` and wait until ``/ready`` answers 200.

    Args:
        home: the state root (``PASSOS_HOME``).
        env: extra environment on top of this process's.
        args: extra command-line arguments (``--workers 2``).
        output: where stdout and stderr go (``subprocess.PIPE`` keeps them for ``stop()``).
        timeout: seconds to wait for readiness.
    """
    port = free_port()
    command = [sys.executable, "-m", "cli", "serve", "--port", str(port), "--log-level", "warning", *args]
    process = subprocess.Popen(
        command,
        env=os.environ | {"PASSOS_HOME": str(home)} | dict(env or {}),
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = ServedProcess(port, home, process)
    try:
        wait_until(
            lambda: answers(f"{served.url}/ready"),
            timeout=timeout,
            interval=0.1,
            what="passos serve ready",
            alive=lambda: process.poll() is None,
        )
    except AssertionError as error:
        raise AssertionError(f"{error}: {served.stop(timeout=5)[-3000:]}") from None
    return served


@contextmanager
def serving(home: Path, **kwargs: object) -> Iterator[ServedProcess]:
    """``start_serve`` as a context manager that stops the process on the way out."""
    served = start_serve(home, **kwargs)  # type: ignore[arg-type]
    try:
        yield served
    finally:
        served.stop()
