"""`make prefect` stopped with Ctrl-C ends cleanly: the script stops its children and make reports no error.

The real script runs under a real `make`; what lies outside it is replaced at its edges: a small
HTTP server answers Prefect's health check (so no Prefect server starts), and `passos deploy` is a
stand-in that waits like the real serve process and records the signal it gets.
"""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from passos.settings import PROJECT_ROOT

pytestmark = pytest.mark.skipif(not (shutil.which("make") and shutil.which("curl")), reason="needs make and curl")


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


def _restore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as in a terminal: Ctrl-C reaches every process
    os.setsid()


def test_ctrl_c_on_make_prefect_stops_everything_without_error_130(tmp_path: Path, health_port: int) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "deploy-stopped"
    fake_deploy = bin_dir / "passos"
    fake_deploy.write_text(
        f"#!/usr/bin/env bash\ntrap 'echo TERM > {marker}; exit 0' TERM\necho serving\nsleep 60 & wait $!\n"
    )
    fake_deploy.chmod(0o755)
    # the project's own recipe and shell, run from a folder whose bin/ holds the stand-in
    lines = (PROJECT_ROOT / "Makefile").read_text().splitlines()
    shell = next(line for line in lines if line.startswith("SHELL"))
    recipe = lines[next(i for i, line in enumerate(lines) if line.startswith("prefect:")) + 1]
    (tmp_path / "scripts").mkdir()
    shutil.copy(PROJECT_ROOT / "scripts" / "prefect_up.sh", tmp_path / "scripts" / "prefect_up.sh")
    makefile = tmp_path / "Makefile"
    makefile.write_text(f"{shell}\nBIN := bin\nprefect:\n{recipe}\n")
    env = {**os.environ, "PASSOS_HOME": str(tmp_path / "home"), "PREFECT_PORT": str(health_port)}
    log = tmp_path / "make.log"
    with log.open("w") as out:
        make = subprocess.Popen(
            ["make", "-C", str(tmp_path), "prefect"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_restore_sigint,
        )
        deadline = time.monotonic() + 30
        while "Ctrl-C stops" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "Ctrl-C stops" in log.read_text(), log.read_text()
        os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        make.wait(timeout=30)
    output = log.read_text()
    assert "stopped" in output and "Error 130" not in output and "***" not in output, output
    assert marker.read_text().strip() == "TERM"  # the serve process was stopped by the script, not left running
