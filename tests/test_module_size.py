"""One job per module: no Python module of the product's rooms is over 500 lines."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from passos.settings import PROJECT_ROOT

MAX_LINES = 500
ROOMS = ("features", "warehouse", "modeling", "serving")


def oversized(root: Path, names: list[str], *, limit: int = MAX_LINES) -> dict[str, int]:
    """The files of ``names`` (relative to ``root``) with more than ``limit`` lines, with their count."""
    counts = {name: len((root / name).read_text(encoding="utf-8").splitlines()) for name in names}
    return {name: count for name, count in counts.items() if count > limit}


def tracked_modules() -> list[str]:
    patterns = [f"{room}/*.py" for room in ROOMS]
    listed = subprocess.run(
        ["git", "ls-files", "--", *patterns], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    return [name for name in listed.stdout.splitlines() if (PROJECT_ROOT / name).is_file()]


def test_no_module_of_a_room_is_over_500_lines() -> None:
    modules = tracked_modules()
    assert any(name.startswith("serving/") for name in modules), modules  # the listing found the rooms
    assert oversized(PROJECT_ROOT, modules) == {}


def test_the_count_catches_a_module_one_line_over(tmp_path: Path) -> None:
    (tmp_path / "big.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "fits.py").write_text("x = 1\n" * MAX_LINES)
    assert oversized(tmp_path, ["big.py", "fits.py"]) == {"big.py": MAX_LINES + 1}
