"""The served artifact: refitted on every labelled year, then checked at its own threshold."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from modeling.refit import check_artifact, refit_on_all
from modeling.training import TrainingResult, train_candidates
from tests.factories import make_feature_frame

TARGET = 0.9


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_feature_frame("current", n_per_year=250, seed=11)


@pytest.fixture(scope="module")
def result(frame: pd.DataFrame) -> TrainingResult:
    return train_candidates(frame, "current", recall_target=TARGET, seed=3, kinds=("lightgbm", "logistic"))


def test_refit_runs_the_same_procedure_on_every_year(frame: pd.DataFrame, result: TrainingResult) -> None:
    refit = refit_on_all(result.candidates["logistic"], frame, recall_target=TARGET, seed=3)
    assert refit.kind == "logistic" and refit.task == "current" and refit.variant == "full"
    assert refit.metadata["train_years"] == [2022, 2023, 2024] and len(refit.members) == 3
    assert refit.metadata["protocol"] == "refit_all_years"
    assert refit.metadata["evaluated_as"]["test_year"] == 2024
    assert refit.metadata["validation_metrics"]["recall"] >= refit.metadata["operating_recall"]
    assert refit.metadata["reference_year"] == 2024 and len(refit.reference) == 250
    from_bundle = refit_on_all(result.candidates["lightgbm"].bundle, frame, recall_target=TARGET, seed=3)
    assert from_bundle.kind == "lightgbm"


def test_the_check_passes_a_model_that_finds_its_students(frame: pd.DataFrame, result: TrainingResult) -> None:
    refit = refit_on_all(result.best, frame, recall_target=TARGET, seed=3)
    check = check_artifact(refit, frame, recall_target=TARGET)
    assert check.passed, check.problems
    assert set(check.per_year) == {"2022", "2023", "2024"}
    assert all(year["recall"] >= TARGET for year in check.per_year.values())
    assert check.score_range[1] >= 0.5 and sum(r["n"] for r in check.reliability) == len(frame)
    assert check.as_dict()["passed"] is True


def test_the_check_fails_a_model_applied_at_a_foreign_threshold(frame: pd.DataFrame, result: TrainingResult) -> None:
    """A threshold fitted for another model's scores misses the students."""
    refit = refit_on_all(result.best, frame, recall_target=TARGET, seed=3)
    squeezed = dataclasses.replace(
        refit, threshold=float(np.quantile(refit.predict_proba(np.zeros((1, 21))), 0.5)) + 0.45
    )
    check = check_artifact(squeezed, frame, recall_target=TARGET)
    assert not check.passed
    assert any("below the target 0.90" in p for p in check.problems)


def test_the_check_fails_scores_that_never_say_more_likely_than_not(
    frame: pd.DataFrame, result: TrainingResult
) -> None:
    refit = refit_on_all(result.best, frame, recall_target=TARGET, seed=3)
    shrunk = dataclasses.replace(
        refit, calibrator=dataclasses.replace(refit.calibrator, a=refit.calibrator.a * 0.05, b=-2.0), threshold=0.0
    )
    check = check_artifact(shrunk, frame, recall_target=TARGET)
    assert not check.passed
    assert any("more likely than not" in p for p in check.problems)
    assert any("outside the scores' range" in p for p in check.problems)
