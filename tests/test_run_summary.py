"""`passos run` ends with a short summary for a person; its log lines name the Prefect run they are about."""

from __future__ import annotations

import logging

from cli.base import LOG_FORMAT, RunNamingFormatter
from cli.summary import render_summary
from passos.settings import Settings

RESULT = {
    "ingest": [
        {"source": "pede_2022.csv", "year": 2022, "status": "loaded", "rows_loaded": 860, "rows_quarantined": 0},
        {"source": "pede_2023.csv", "year": 2023, "status": "loaded", "rows_loaded": 1014, "rows_quarantined": 0},
        {"source": "book.xlsx[PEDE2023]", "year": 2023, "status": "skipped", "rows_loaded": 0, "rows_quarantined": 0},
    ],
    "train": [
        {
            "task": "current",
            "version": "v20261203T080855Z-181fc308",
            "kind": "lightgbm",
            "accepted": False,
            "held": False,
            "reasons": ["recall 0.927 < minimum 0.990"],
            "test_recall": 0.9269662921348315,
            "test_precision": 0.6123456789,
            "test_roc_auc": 0.8512345,
        },
        {
            "task": "next_year",
            "version": "v20261203T081034Z-db1b6fa9",
            "kind": "lightgbm",
            "accepted": True,
            "held": False,
            "reasons": [],
            "test_recall": 0.91,
            "test_precision": 0.55,
            "test_roc_auc": 0.8,
        },
    ],
    "score": [{"task": "next_year", "year": 2024, "scored": 1156, "high_risk": 739, "out": None}],
    "drift": [
        {"task": "next_year", "current": "year 2024", "verdict": "watch", "reasons": ["a", "b", "c"]},
    ],
}


def test_the_summary_says_what_was_trained_its_verdict_where_to_look_and_what_next(settings: Settings) -> None:
    settings.reports_dir.mkdir(parents=True)
    (settings.reports_dir / "call_list_2024.csv").write_text("ra\n", encoding="utf-8")
    text = render_summary(RESULT, settings, state="Rejected")
    lines = text.splitlines()
    assert lines[0] == "passos run: Rejected"
    assert len(lines) <= 40 and "{" not in text  # a summary, not the JSON
    (current,) = [line for line in lines if line.strip().startswith("current ")]
    assert "REJECTED" in current and "recall 0.927, precision 0.612, ROC-AUC 0.851" in current
    assert "0.9269662921348315" not in text
    assert "- recall 0.927 < minimum 0.990" in text  # the reason, under its task
    (next_year,) = [line for line in lines if line.strip().startswith("next_year  lightgbm")]
    assert "accepted, now the champion" in next_year and "recall 0.910" in next_year
    assert "2 sources loaded (2022: 860 rows, 2023: 1014 rows); 1 skipped" in text
    assert "739 at high risk" in text and "drift on year 2024: watch (3 reasons in the report)" in text
    assert str(settings.reports_dir / "drift") in text and "http://127.0.0.1:8000/reports/" in text
    assert f"call list       {settings.reports_dir / 'call_list_2024.csv'}" in text
    assert "http://127.0.0.1:8000/docs" in text
    for command in ("passos serve", "passos models list", "passos retrain", "passos run --json"):
        assert command in text, command


def test_without_a_call_list_the_summary_does_not_invent_one(settings: Settings) -> None:
    assert "call list" not in render_summary(RESULT, settings)


def test_a_prefect_run_line_names_its_task() -> None:
    formatter = RunNamingFormatter(LOG_FORMAT)
    record = logging.LogRecord(
        "prefect.task_runs", logging.INFO, __file__, 1, "Finished in state Completed()", None, None
    )
    record.task_name = "gate_task"
    assert formatter.format(record).endswith("prefect.task_runs: gate_task: Finished in state Completed()")
    plain = logging.LogRecord("passos.cli", logging.INFO, __file__, 1, "hello", None, None)
    assert formatter.format(plain).endswith("passos.cli: hello")


def test_a_held_candidate_and_quarantined_rows_are_said(settings: Settings) -> None:
    result = RESULT | {
        "ingest": [{"source": "a.csv", "year": 2024, "status": "loaded", "rows_loaded": 9, "rows_quarantined": 2}],
        "train": [RESULT["train"][1] | {"held": True, "test_recall": None}],
    }
    text = render_summary(result, settings)
    assert "1 source loaded (2024: 9 rows); 2 rows quarantined" in text
    assert "HELD FOR REVIEW" in text and "recall n/a" in text
