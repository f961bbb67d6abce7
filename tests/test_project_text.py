"""The project's files speak of the product: no issue numbers, work notes, sessions or past runs."""

from __future__ import annotations

import re
import subprocess

import pytest

from passos.settings import PROJECT_ROOT

BINARY = (".png", ".jpg", ".parquet", ".xlsx", ".duckdb", ".joblib", ".gz")
# Each pattern names a way a file speaks of its own making rather than of the product.
HISTORY = {
    "an issue or PR number": re.compile(r"\b(?:issues?|tickets?|PRs?|pull requests?)[ -]?#?\d+", re.IGNORECASE),
    "a bare #number reference": re.compile(r"(?:^|[\s(\[])#\d{1,4}(?=[\s).,:\]]|$)"),
    "a work note": re.compile(r"\b(?:session|work|hand-?off) notes?\b|\bnotes? of (?:the|this) session\b", re.I),
    "this session": re.compile(r"\b(?:this|earlier|previous|last|one) session'?s?\b", re.IGNORECASE),
    "a numbered stop": re.compile(r"\bstop \d+\b", re.IGNORECASE),
    "a past rework": re.compile(r"\bmodel rework\b|\bbefore (?:this|the) (?:change|fix|rework)\b", re.IGNORECASE),
    "this run's history": re.compile(r"\bin this run\b|\bthis branch\b|\bmerged code\b|\bearlier `?main`?\b", re.I),
    "the issue as a source": re.compile(r"\bthe issue(?:'s)? (?:offered|asked|says|said|measured|bound)\b", re.I),
    "a past version": re.compile(
        r"\bused to be\b|\bthe old (?:rule|check|code)\b|\bbefore: \d|\bwent wrong before\b", re.I
    ),
    "a work tree path": re.compile(r"/work/wt/|\bwt/issue-", re.IGNORECASE),
}


def tracked_text_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    return [name for name in listed.stdout.splitlines() if not name.endswith(BINARY) and name != __file__]


def find_history(text: str) -> list[tuple[int, str, str]]:
    """Every (line number, kind, line) that speaks of the project's making."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for kind, pattern in HISTORY.items():
            if pattern.search(line):
                found.append((number, kind, line.strip()[:160]))
    return found


def test_the_patterns_catch_what_they_are_for() -> None:
    for line in (
        "the rework of issue 10 was merged",
        "see #12 for why",
        "the events queued at exit: see the session note",
        "The training columns predate this session's model rework",
        "goals all missed in this run",
        "(stop 3)",
        "it used to be a confident, false low",
        "Profile at /work/wt/issue-12b/benchmarks/profile_api.py:43",
    ):
        assert find_history(line), line
    for line in ("color: #222;", "data-quality issues: 3", "an analyst's session on analytics.duckdb", "top 10 %"):
        assert not find_history(line), line


def test_no_tracked_file_speaks_of_its_own_making() -> None:
    this = "tests/test_project_text.py"
    problems = []
    for name in tracked_text_files():
        if name == this:
            continue
        try:
            text = (PROJECT_ROOT / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        problems += [f"{name}:{number}: {kind}: {line}" for number, kind, line in find_history(text)]
    assert not problems, "\n".join(problems)
