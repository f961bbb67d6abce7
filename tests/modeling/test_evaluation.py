"""evaluate(): figures agree with scikit-learn, budgets, groups, degenerate inputs, JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    fbeta_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from modeling.evaluation import evaluate


@pytest.fixture
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = (rng.random(500) < 0.4).astype(float)
    score = np.clip(0.35 * y + rng.random(500) * 0.7, 0, 1)
    return y, score


def test_figures_match_sklearn(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, score = scored
    result = evaluate(y, score, 0.5)
    predicted = score >= 0.5
    assert result["recall"] == pytest.approx(recall_score(y, predicted))
    assert result["precision"] == pytest.approx(precision_score(y, predicted))
    assert result["f1"] == pytest.approx(f1_score(y, predicted))
    assert result["f2"] == pytest.approx(fbeta_score(y, predicted, beta=2))
    assert result["roc_auc"] == pytest.approx(roc_auc_score(y, score))
    assert result["pr_auc"] == pytest.approx(average_precision_score(y, score))
    assert result["brier"] == pytest.approx(brier_score_loss(y, score))
    assert result["tp"] + result["fp"] + result["fn"] + result["tn"] == result["n"] == 500
    assert result["positives"] == int(y.sum())
    assert result["false_negative_rate"] == pytest.approx(1 - result["recall"])
    assert result["brier_base_rate"] == pytest.approx(y.mean() * (1 - y.mean()))
    json.dumps(result, allow_nan=False)


def test_at_budget_counts_the_top_share() -> None:
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0], dtype=float)
    score = np.linspace(1.0, 0.1, 10)
    budget = evaluate(y, score, 0.5)["at_budget"]
    assert budget["top_10pct"] == {"share": 0.1, "alerts": 1, "recall": pytest.approx(1 / 3), "precision": 1.0}
    assert budget["top_20pct"]["recall"] == pytest.approx(2 / 3)
    assert budget["top_30pct"]["precision"] == pytest.approx(2 / 3)


def test_by_group_recall_and_unknown_labels() -> None:
    y = np.array([1, 1, 1, 0, 1, 0], dtype=float)
    score = np.array([0.9, 0.2, 0.8, 0.7, 0.6, 0.1])
    groups = {"genero": np.array(["F", "F", "M", "M", None, np.nan], dtype=object), "fase": np.array([1.0] * 6)}
    table = evaluate(y, score, 0.5, groups=groups)["by_group"]
    assert table["genero"]["F"] == {
        "n": 2,
        "positives": 2,
        "alerts": 1,
        "recall": 0.5,
        "precision": 1.0,
        "false_negative_rate": 0.5,
        "recall_ci_low": pytest.approx(0.0945, abs=1e-4),  # Wilson 95 % for 1 of 2
        "recall_ci_high": pytest.approx(0.9055, abs=1e-4),
        "judgeable": False,  # fewer than 30 students behind
    }
    assert table["genero"]["M"]["recall"] == 1.0
    assert table["genero"]["unknown"]["n"] == 2
    assert list(table["fase"]) == ["1"]


def test_a_group_with_enough_positives_is_judged_with_an_interval() -> None:
    y = np.ones(40)
    score = np.r_[np.full(36, 0.9), np.full(4, 0.1)]
    row = evaluate(y, score, 0.5, groups={"fase": np.zeros(40)})["by_group"]["fase"]["0"]
    assert row["judgeable"] is True and row["recall"] == 0.9
    assert 0.76 < row["recall_ci_low"] < 0.9 < row["recall_ci_high"] < 0.97


def test_single_class_and_no_alerts_do_not_crash() -> None:
    result = evaluate(np.zeros(5), np.linspace(0, 0.4, 5), 0.5)
    assert result["roc_auc"] is None and result["pr_auc"] is None
    assert result["recall"] is None and result["f2"] is None
    assert result["precision"] == 0.0
    json.dumps(result, allow_nan=False)
    ones = evaluate(np.ones(4), np.full(4, 0.1), 0.5)
    assert ones["recall"] == 0.0 and ones["f2"] == 0.0 and ones["roc_auc"] is None


@pytest.mark.parametrize(
    ("y", "score", "message"),
    [
        (np.array([0.0, 1.0]), np.array([0.1]), "rows"),
        (np.array([0.0, np.nan]), np.array([0.1, 0.2]), "0 and 1"),
        (np.array([0.0, 2.0]), np.array([0.1, 0.2]), "0 and 1"),
        (np.array([0.0, 1.0]), np.array([0.1, np.nan]), "NaN"),
    ],
)
def test_bad_inputs_are_named(y: np.ndarray, score: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate(y, score, 0.5)


def test_group_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="group labels"):
        evaluate(np.array([0.0, 1.0]), np.array([0.1, 0.9]), 0.5, groups={"g": np.array(["a"])})


def test_bootstrap_intervals_cover_the_point_estimate() -> None:
    from modeling.evaluation import bootstrap_intervals

    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.4).astype(float)
    score = y * 0.3 + rng.random(500) * 0.7
    point = evaluate(y, score, 0.6)
    boot = bootstrap_intervals(y, score, 0.6, resamples=300)
    for name in ("recall", "precision", "roc_auc"):
        low, high = boot[name]  # type: ignore[misc]
        assert low < point[name] < high and high - low < 0.2
    assert bootstrap_intervals(np.zeros(10), np.linspace(0, 1, 10), 0.5, resamples=50)["recall"] is None
