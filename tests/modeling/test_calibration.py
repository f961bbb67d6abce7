"""Platt scaling with Platt's prior, and the reliability table."""

from __future__ import annotations

import numpy as np
import pytest

from modeling.calibration import fit_calibrator, reliability_table


def test_platt_is_monotone_bounded_and_calibrated() -> None:
    rng = np.random.default_rng(1)
    score = rng.normal(size=4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-2 * score))).astype(float)
    calibrator = fit_calibrator(score, y)
    assert calibrator.method == "platt" and calibrator.a == pytest.approx(2.0, rel=0.15)
    proba = calibrator(np.sort(score))
    assert np.all(np.diff(proba) > 0) and proba.min() > 0 and proba.max() < 1
    for row in reliability_table(y, calibrator(score)):
        if row["n"] > 200:
            assert abs(row["observed_rate"] - row["mean_score"]) < 0.06


def test_separable_scores_keep_a_finite_slope() -> None:
    """Without Platt's prior the slope of separable scores diverges and every row is 'certain'."""
    y = np.repeat([0.0, 1.0], 200)
    score = np.where(y == 1, 1.0, -1.0) + np.linspace(-0.5, 0.5, 400)
    calibrator = fit_calibrator(score, y)
    assert np.isfinite(calibrator.a) and calibrator.a < 50
    top = calibrator(np.array([score.max()]))[0]
    assert 0.98 < top < 1.0  # about one row's worth of doubt, (N+ + 1) / (N+ + 2) = 0.995


def test_calibration_needs_both_classes_and_matching_lengths() -> None:
    with pytest.raises(ValueError, match="both classes"):
        fit_calibrator(np.arange(5.0), np.ones(5))
    with pytest.raises(ValueError, match="rows"):
        fit_calibrator(np.arange(5.0), np.ones(4))


def test_reliability_table_bins_every_row_once() -> None:
    y = np.array([0, 0, 1, 1, 1, 0], dtype=float)
    proba = np.array([0.05, 0.15, 0.55, 0.95, 1.0, 0.0])
    rows = reliability_table(y, proba)
    assert [(r["low"], r["n"]) for r in rows] == [(0.0, 2), (0.1, 1), (0.5, 1), (0.9, 2)]
    assert sum(r["n"] for r in rows) == y.size
    top = rows[-1]
    assert top["observed_rate"] == 1.0 and top["mean_score"] == pytest.approx(0.975)
    assert 0 <= top["ci_low"] < 1.0 == top["ci_high"]
