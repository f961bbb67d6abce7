"""The one-line rules beside every model, and the verdict's flag when a model does not beat them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modeling.baselines import baseline_flags, compare_with_baselines, recall_at_precision
from modeling.card_sections import baseline_sections
from modeling.release import GatePolicy, judge
from modeling.training import train_candidates
from passos.settings import Settings
from tests.factories import make_feature_frame


def _next_year_rows() -> tuple[pd.DataFrame, np.ndarray]:
    """Eight students: four behind now (three stay behind), four on track (two fall behind, one with no slack)."""
    frame = pd.DataFrame(
        {
            "defasagem": [-1, -1, -2, -1, 0, 0, 1, 0],
            "folga_proximo_ano": [0, -1, 0, 0, 0, 1, 1, 1],
        }
    )
    y = np.array([1, 1, 1, 0, 1, 1, 0, 0], dtype=float)
    return frame, y


def test_persistence_and_slack_count_the_students_they_flag() -> None:
    frame, y = _next_year_rows()
    score = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.65, 0.1, 0.3])
    out = compare_with_baselines(frame, "next_year", y, score, threshold=0.5)
    everyone, on_track = out["segments"]["all"], out["segments"]["on track now"]
    persistence = everyone["rules"]["persistence"]
    assert (persistence["flagged"], persistence["caught"], persistence["positives"]) == (4, 3, 5)
    assert persistence["recall"] == pytest.approx(0.6) and persistence["precision"] == pytest.approx(0.75)
    assert on_track["rules"]["persistence"]["caught"] == 0  # by definition
    slack = on_track["rules"]["slack"]
    assert (slack["n"], slack["positives"], slack["flagged"], slack["caught"]) == (4, 2, 1, 1)
    # The model ranks every student behind next year above every other one: it beats both rules.
    assert everyone["model"]["recall"] == 1.0 and everyone["model"]["precision"] == 1.0
    assert all(row["beaten"] is not False for table in out["segments"].values() for row in table["rules"].values())
    assert on_track["rules"]["persistence"]["beaten"] is None  # a rule that flags nobody sets no bar
    assert baseline_flags(out) == []


def test_a_model_that_does_not_beat_a_rule_is_named() -> None:
    frame, y = _next_year_rows()
    score = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.15, 0.6, 0.65])  # misses both on-track students
    out = compare_with_baselines(frame, "next_year", y, score, threshold=0.5)
    slack = out["segments"]["on track now"]["rules"]["slack"]
    assert slack["beaten"] is False and slack["model_recall_at_rule_precision"] == 0.0
    flags = baseline_flags(out)
    assert any("slack rule on on track now students" in flag for flag in flags)


def test_rows_without_a_score_are_never_flagged() -> None:
    frame, y = _next_year_rows()
    score = np.array([0.9, 0.8, 0.7, 0.2, 0.6, np.nan, 0.1, np.nan])
    out = compare_with_baselines(frame, "next_year", y, score, threshold=0.0)
    assert out["segments"]["all"]["model"]["flagged"] == 6
    assert out["segments"]["on track now"]["model"]["caught"] == 1


def test_current_rules_read_the_level_and_the_age() -> None:
    frame = pd.DataFrame(
        {"fase": [1.0, 3.0, 2.0], "idade": [12.0, 12.0, np.nan], "atraso_esperado": [-2.0, 0.0, np.nan]}
    )
    y = np.array([1.0, 0.0, 0.0])
    out = compare_with_baselines(frame, "current", y, np.array([0.9, 0.1, 0.2]), threshold=0.5)
    rules = out["segments"]["all"]["rules"]
    assert rules["level_for_age"]["flagged"] == 1 and rules["level_for_sheet_age"]["flagged"] == 1
    assert set(out["segments"]) == {"all"}
    with pytest.raises(ValueError, match="rows"):
        compare_with_baselines(frame, "current", y[:2], np.zeros(2), threshold=0.5)


def test_recall_at_precision_edges() -> None:
    assert recall_at_precision(np.zeros(3), np.arange(3.0), 0.5) is None
    assert recall_at_precision(np.ones(3), np.arange(3.0), 0.5) == 1.0
    assert recall_at_precision(np.array([0, 1]), np.array([0.9, 0.1]), 1.0) == 0.0


@pytest.fixture(scope="module")
def persistence_is_the_target() -> pd.DataFrame:
    """`next_year` rows whose target is exactly 'behind now': no model can beat persistence."""
    frame = make_feature_frame("next_year", years=(2022, 2023, 2024), n_per_year=200, seed=3)
    frame["target"] = (frame["defasagem"] < 0).astype(float)
    frame.loc[frame["defasagem"].isna(), "target"] = np.nan
    return frame


def test_the_verdict_flags_a_model_that_does_not_beat_its_baselines(
    persistence_is_the_target: pd.DataFrame, settings: Settings
) -> None:
    result = train_candidates(
        persistence_is_the_target, "next_year", recall_target=0.9, seed=1, audit_max_auc=1.0, kinds=("logistic",)
    )
    assert result.baselines is not None
    persistence = result.baselines["segments"]["all"]["rules"]["persistence"]
    assert persistence["recall"] == 1.0 and persistence["beaten"] is False
    verdict = judge(GatePolicy.from_settings(settings, "next_year", min_recall=0.9), result, None)
    assert any(flag.startswith("does not beat the persistence rule on all students") for flag in verdict.flags)
    assert verdict.accepted  # a flag, not a rejection
    card = "\n".join(
        baseline_sections({"task": "next_year", "metrics": {"baselines": result.baselines}, "gate": verdict.as_dict()})
    )
    assert "## Baselines" in card and "- **Flagged**: does not beat the persistence rule" in card
    assert "`next_year` is where" not in card and "on-track rows are where the model must add value" in card
    assert result.card_metadata()["baselines"] == result.baselines


def test_current_card_says_the_target_is_age_and_level() -> None:
    baselines = {"rules": {"level_for_age": "x"}, "segments": {}}
    text = "\n".join(baseline_sections({"task": "current", "baselines": baselines}))
    assert "nearly determined by age and level" in text and "Not flagged" in text
    assert baseline_sections({"task": "current"}) == []
