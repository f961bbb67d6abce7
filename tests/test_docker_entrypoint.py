"""The container entrypoint refuses to serve the API without a key or without an id salt."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from passos.settings import PROJECT_ROOT

ENTRYPOINT = PROJECT_ROOT / "scripts" / "docker_entrypoint.sh"


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "passos"  # stands in for the real CLI: says what it was asked to run
    fake.write_text('#!/bin/sh\necho "ran passos $*"\n')
    fake.chmod(0o755)
    base = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "PASSOS_HOME": str(tmp_path / "home")}
    return subprocess.run(["sh", str(ENTRYPOINT), *args], env=base | env, capture_output=True, text=True, timeout=10)


@pytest.mark.parametrize(
    ("env", "refused"),
    [
        ({}, "PASSOS_API_KEY is empty"),
        ({"PASSOS_API_KEY": "k"}, "PASSOS_ID_SALT is empty"),
        ({"PASSOS_API_KEY": "k", "PASSOS_ID_SALT": ""}, "PASSOS_ID_SALT is empty"),
        ({"PASSOS_ALLOW_NO_API_KEY": "1"}, "PASSOS_ID_SALT is empty"),
    ],
)
def test_the_api_does_not_start_without_a_key_and_a_salt(tmp_path: Path, env: dict[str, str], refused: str) -> None:
    result = run(tmp_path, **env)
    assert result.returncode == 64 and refused in result.stderr and "ran passos" not in result.stdout


def test_the_api_starts_with_a_salt_from_the_environment_or_the_volume(tmp_path: Path) -> None:
    result = run(tmp_path, PASSOS_API_KEY="k", PASSOS_ID_SALT="s")
    assert result.returncode == 0 and result.stdout.strip() == "ran passos serve --host 0.0.0.0 --port 8000"
    (tmp_path / "home").mkdir(exist_ok=True)  # the entrypoint made it
    (tmp_path / "home" / "id_salt").write_text("per-install\n")
    assert run(tmp_path, PASSOS_API_KEY="k").returncode == 0


def test_other_commands_need_neither(tmp_path: Path) -> None:
    result = run(tmp_path, "passos", "run")
    assert result.returncode == 0 and result.stdout.strip() == "ran passos run"
