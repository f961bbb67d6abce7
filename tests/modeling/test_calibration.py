"""Platt scaling with Platt's prior and a positive slope, and the reliability table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from features.featuresets import TASKS, encode_frame
from modeling.bundle import Calibrator
from modeling.calibration import CalibrationError, _logistic, fit_calibration, fit_calibrator, reliability_table
from modeling.training import train_candidates
from modeling.variants import VARIANT_ORDER
from passos.settings import Settings
from warehouse import loader
from warehouse.connection import connect
from warehouse.sources import discover


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


def test_platt_fits_the_prior_corrected_targets_not_zero_and_one() -> None:
    """Positives count as (N+ + 1) / (N+ + 2) and negatives as 1 / (N- + 2) (Platt, 1999).

    With two score values and one class on each, the map has as many parameters as values and
    reaches its targets exactly: the prior's targets, not the hard 0 and 1.
    """
    y = np.array([1.0] * 3 + [0.0] * 7)
    score = y.copy()  # positives at 1, negatives at 0: separable
    calibrator = fit_calibrator(score, y)
    np.testing.assert_allclose(calibrator(np.array([0.0, 1.0])), [1 / (7 + 2), (3 + 1) / (3 + 2)], atol=1e-3)


def test_the_platt_map_applies_its_intercept() -> None:
    calibrator = Calibrator("platt", a=2.0, b=-3.0)
    np.testing.assert_allclose(calibrator(np.array([1.5, 0.0])), [0.5, 1 / (1 + np.exp(3.0))])
    # a fitted map: a rare class sits low where the score is 0, which only the intercept can say
    rng = np.random.default_rng(4)
    score = rng.normal(size=3000)
    y = (rng.random(3000) < 1 / (1 + np.exp(-(score - 2.0)))).astype(float)
    fitted = fit_calibrator(score, y)
    assert fitted.b == pytest.approx(-2.0, abs=0.3)
    assert fitted(np.array([0.0]))[0] == pytest.approx(1 / (1 + np.exp(-fitted.b)))
    assert fitted(score).mean() == pytest.approx(y.mean(), abs=0.01)


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


def test_a_reliability_bin_holds_its_lower_edge_and_not_its_upper() -> None:
    """Bins are [low, high), as an alert is score >= cut; the last one also holds 1.0."""
    proba = np.array([0.1, 0.3, 0.5, 0.7, 0.9, 1.0])
    rows = reliability_table(np.zeros(proba.size), proba)
    assert [(r["low"], r["high"], r["n"]) for r in rows] == [
        (0.1, 0.2, 1),
        (0.3, 0.4, 1),
        (0.5, 0.6, 1),
        (0.7, 0.8, 1),
        (0.9, 1.0, 2),
    ]
    assert [r["mean_score"] for r in rows[:-1]] == [0.1, 0.3, 0.5, 0.7]


def _pooled_years(seed: int = 3, *, effect: float = 1.2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two years: in each a higher score means more often behind, but the year with the higher
    scores has the far lower base rate (70 % behind against 25 %)."""
    rng = np.random.default_rng(seed)
    scores, labels, years = [], [], []
    for year, centre, rate in ((2022, -2.0, 0.70), (2023, 2.0, 0.25)):
        y = (rng.random(1500) < rate).astype(float)
        scores.append(centre + effect * y + rng.normal(0, 1, 1500))
        labels.append(y)
        years.append(np.full(1500, year))
    return np.concatenate(scores), np.concatenate(labels), np.concatenate(years)


def test_pooled_years_of_different_base_rates_keep_their_ranking() -> None:
    score, y, years = _pooled_years()
    within = [roc_auc_score(y[years == v], score[years == v]) for v in (2022, 2023)]
    assert min(within) > 0.75  # the score ranks well inside each year
    # Platt on the pooled rows alone (the map fitted before) finds a negative slope and reverses it.
    hi, lo = (y.sum() + 1) / (y.sum() + 2), 1 / ((1 - y).sum() + 2)
    pooled_slope, _ = _logistic(score.reshape(-1, 1), np.where(y == 1, hi, lo), intercept=True)
    assert pooled_slope < 0
    calibrator, how = fit_calibration(score, y, groups=years)
    assert calibrator.a > 0 and "within the groups 2022, 2023" in how
    for v in (2022, 2023):
        rows = years == v
        assert roc_auc_score(y[rows], calibrator(score[rows])) == pytest.approx(within[v - 2022], abs=1e-12)
    proba = calibrator(np.sort(score))
    assert np.all(np.diff(proba) > 0)
    # The intercept is fitted on all rows: the mean probability is the pooled share behind.
    assert calibrator(score).mean() == pytest.approx(y.mean(), abs=0.01)


def test_a_positive_pooled_slope_is_kept() -> None:
    rng = np.random.default_rng(5)
    score = rng.normal(size=2000)
    y = (rng.random(2000) < 1 / (1 + np.exp(-score))).astype(float)
    years = np.repeat([2022, 2023], 1000)
    calibrator, how = fit_calibration(score, y, groups=years)
    assert how.startswith("platt on all rows pooled") and calibrator.a == pytest.approx(1.0, rel=0.2)


def test_a_score_that_ranks_backwards_within_years_cannot_be_calibrated() -> None:
    score, y, years = _pooled_years(effect=-1.2)
    with pytest.raises(CalibrationError, match=r"no increasing calibration.*groups 2022, 2023"):
        fit_calibrator(score, y, groups=years)
    with pytest.raises(ValueError, match="groups"):
        fit_calibrator(score, y, groups=years[:-1])


@pytest.mark.data
@pytest.mark.slow
def test_every_variant_ranks_the_real_test_year_as_its_raw_score(
    real_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Calibrated and raw scores give every candidate of every variant the same out-of-time ROC-AUC."""
    settings = Settings(home=tmp_path_factory.mktemp("real"))
    with connect(settings) as con:
        loader.ingest(con, "real", discover([real_data]))
        frames = {task: con.execute(f"select * from features_{task}").df() for task in TASKS}
    for task, frame in frames.items():
        for variant in VARIANT_ORDER:
            result = train_candidates(frame, task, recall_target=0.9, seed=42, variant=variant)
            test = frame.loc[(frame["year"] == result.test_year) & frame["target"].notna()]
            X, y = encode_frame(test, task), test["target"].to_numpy()
            for kind, candidate in result.candidates.items():
                bundle = candidate.bundle
                raw, calibrated = roc_auc_score(y, bundle.raw_score(X)), roc_auc_score(y, bundle.predict_proba(X))
                assert bundle.calibrator.a > 0, (task, variant, kind)
                assert calibrated == pytest.approx(raw, abs=1e-9), (task, variant, kind)
