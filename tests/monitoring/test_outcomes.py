"""Realised recall, precision and missed ids per model version, from rows of the `outcomes` view."""

from __future__ import annotations

import pandas as pd
import pytest

from monitoring.outcomes import fmt_share, summarise


def rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "task": ["next_year"] * 6 + ["current"] * 2,
            "year": [2023] * 6 + [2024] * 2,
            "ra": ["RA-1", "RA-2", "RA-3", "RA-4", "RA-5", "RA-6", "RA-1", "RA-7"],
            "model_version": ["v1"] * 4 + ["v2"] * 2 + ["v3"] * 2,
            "risk_label": ["high", "high", "low", "low", "low", "low", "low", "low"],
            "risk_score": [0.9, 0.8, 0.3, 0.1, 0.2, 0.1, 0.1, 0.2],
            "behind": [True, False, True, False, False, False, False, False],
        }
    )


def test_summaries_per_task_year_and_version() -> None:
    summaries = {s.model_version: s for s in summarise(rows(), {"v1": [2022, 2023], "v2": [2022]})}
    v1 = summaries["v1"]
    assert (v1.task, v1.year, v1.students, v1.behind, v1.warned) == ("next_year", 2023, 4, 2, 2)
    assert v1.recall == pytest.approx(0.5) and v1.precision == pytest.approx(0.5)
    assert v1.missed == ["RA-3"] and v1.in_sample is True
    v2 = summaries["v2"]
    assert v2.recall is None and v2.precision is None and v2.missed == [] and v2.in_sample is False
    assert summaries["v3"].in_sample is None  # training years unknown
    assert v1.as_dict()["missed"] == ["RA-3"]


def test_missing_columns_are_named_and_shares_format() -> None:
    with pytest.raises(ValueError, match="behind"):
        summarise(rows().drop(columns="behind"))
    assert summarise(rows().iloc[:0]) == []
    assert fmt_share(None) == "n/a" and fmt_share(float("nan")) == "n/a" and fmt_share(0.5) == "0.500"
