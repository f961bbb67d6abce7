"""What the CLI prints for people: help that reads in whole sentences, an SQL error that points at the mistake."""

from __future__ import annotations

import re

import duckdb
import pytest
from typer.testing import CliRunner

from cli.app import app
from passos.errors import ExitCode
from passos.settings import Settings


@pytest.mark.parametrize(("command", "codes"), [("train", ("10", "12")), ("run", ("10", "11", "12"))])
def test_help_is_whole_sentences_and_names_every_exit_code(command: str, codes: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=120, env={"COLUMNS": "120"})
    assert result.exit_code == 0
    description = result.output.split("─ Options")[0]
    lines = [
        line.strip()
        for line in description.splitlines()
        if line.strip() and not line.strip().startswith(("Usage", "╭"))
    ]
    assert lines, result.output
    for line in lines:
        assert line.endswith((".", ")", ":")), f"a sentence broken across lines: {line!r}"
    for code in codes:
        assert re.search(rf"\bExit {code}\b", description), (code, description)


@pytest.mark.parametrize(
    ("query", "wrong"),
    [("selct * from students", "selct"), ("select * from students s join studens t using (ra)", "studens")],
)
def test_an_sql_error_points_its_caret_at_the_mistake(settings: Settings, query: str, wrong: str) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.analytics_path)) as con:
        con.execute("create table students (ra varchar, year integer)")
    result = CliRunner().invoke(app, ["sql", query])
    assert result.exit_code == ExitCode.USAGE, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    (at,) = [i for i, line in enumerate(lines) if line.startswith("LINE 1: ")]
    caret = lines[at + 1]
    assert caret.strip() == "^", lines
    assert lines[at][caret.index("^") :].startswith(wrong), lines
