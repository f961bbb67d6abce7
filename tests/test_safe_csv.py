"""Every CSV the project writes neutralises spreadsheet formulas and keeps numbers numbers."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
import pytest

from passos.safe_csv import neutralise, write_csv
from passos.settings import Settings


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("@SUM(1+1)", "'@SUM(1+1)"),
        ('+HYPERLINK("http://x")', '\'+HYPERLINK("http://x")'),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-1", "-1"),  # a negative number in a text column stays a number
        ("+2.5", "+2.5"),
        ("-3e4", "-3e4"),
        ("7E", "7E"),
        ("RA-1", "RA-1"),
        ("", ""),
    ],
)
def test_neutralise(cell: str, written: str) -> None:
    assert neutralise(cell) == written


def test_write_csv_keeps_numbers_and_neutralises_text_and_names(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "ra": ['=HYPERLINK("http://evil")', "RA-2"],
            "defasagem": [-1, -2],
            "score": [-0.5, 0.25],
            "turma": ["@SUM(A1)", None],
            "=name": ["x", "y"],
        }
    )
    text = write_csv(frame)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["ra", "defasagem", "score", "turma", "'=name"]
    assert rows[1] == ['\'=HYPERLINK("http://evil")', "-1", "-0.5", "'@SUM(A1)", "x"]
    assert rows[2] == ["RA-2", "-2", "0.25", "", "y"]
    out = tmp_path / "deep" / "scores.csv"
    assert write_csv(frame, out) == "" and out.read_text() == text
    assert frame.loc[0, "ra"].startswith("=")  # the caller's frame is not changed


def test_score_output_goes_through_the_writer(settings: Settings, tmp_path: Path) -> None:
    from flows.score import write_scores

    scores = pd.DataFrame(
        {
            "ra": ["=cmd|' /C calc'!A0"],
            "year": [2030],
            "task": ["current"],
            "model_version": ["v1"],
            "risk_score": [0.9],
            "risk_label": ["high"],
            "rank": [1],
            "reasons": [None],
            "scored_at": [pd.Timestamp("2030-01-01")],
        }
    )
    out = tmp_path / "scores.csv"
    assert write_scores.fn(settings, scores, str(out)) == 1
    assert out.read_text().splitlines()[1].startswith("'=cmd")
