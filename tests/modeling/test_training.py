"""Training: honest splits, thresholds chosen without the test year, calibration, leakage audit."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom
from sklearn.isotonic import IsotonicRegression

from features.featuresets import encode_frame
from modeling.training import (
    TrainingResult,
    assert_no_leakage,
    audit_leakage,
    choose_threshold,
    feature_aucs,
    fit_calibrator,
    fit_candidate,
    forward_split,
    operating_recall,
    precision_at_recall,
    recall_lower_bound,
    refit_on_all,
    split_out_of_time,
    train_candidates,
)
from passos.errors import LeakageError
from tests.factories import make_feature_frame

TARGET = 0.9


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    frame = make_feature_frame("current", n_per_year=250, seed=11)
    frame.loc[frame.sample(frac=0.05, random_state=1).index, "target"] = np.nan
    return frame


@pytest.fixture(scope="module")
def result(frame: pd.DataFrame) -> TrainingResult:
    return train_candidates(frame, "current", recall_target=TARGET, seed=3)


def test_split_uses_earlier_years_for_training(frame: pd.DataFrame) -> None:
    split = split_out_of_time(frame)
    assert split.protocol == "out_of_time"
    assert split.train_years == (2022, 2023) and split.test_year == 2024
    assert set(split.train["year"]) == {2022, 2023}
    assert set(split.test["year"]) == {2024}
    assert split.train["target"].notna().all() and split.test["target"].notna().all()
    assert len(split.train) + len(split.test) == frame["target"].notna().sum()


def test_split_edge_cases() -> None:
    one_year = make_feature_frame("current", years=(2023,), n_per_year=40)
    split = split_out_of_time(one_year)
    assert (split.protocol, split.test, split.train_years, split.test_year) == ("grouped_cv", None, (2023,), None)
    with pytest.raises(ValueError, match="no row"):
        split_out_of_time(one_year.assign(target=np.nan))


def test_result_records_protocol_and_years(frame: pd.DataFrame, result: TrainingResult) -> None:
    assert result.protocol == "out_of_time" and result.validation == "forward"
    assert "forward-validation" in result.selection_rule and "2023" in result.selection_rule
    assert "latest training year" in result.card_metadata()["threshold_rule"]
    assert (result.train_years, result.test_year) == ((2022, 2023), 2024)
    assert set(result.candidates) == {"lightgbm", "logistic", "rule"}
    assert result.best is result.candidates[result.chosen]
    for candidate in result.candidates.values():
        assert candidate.bundle.metadata["train_years"] == [2022, 2023]
        assert candidate.bundle.metadata["protocol"] == "out_of_time"
        # Two training years: the threshold is set on the later one, scored by a model of the earlier.
        assert candidate.bundle.metadata["validation"] == "forward"
        assert candidate.bundle.metadata["validation_years"] == [2023]
        assert candidate.validation_metrics["recall"] >= TARGET
        assert (
            candidate.validation_metrics["n"]
            == (frame["year"] == 2023).sum() - frame.loc[frame["year"] == 2023, "target"].isna().sum()
        )
        assert candidate.test_metrics["n"] == len(candidate.test_predictions.y_true)
        assert set(candidate.test_predictions.groups) == {"genero", "instituicao", "fase"}
    json.dumps(result.card_metadata(), allow_nan=False)


def test_threshold_is_chosen_without_the_test_year(frame: pd.DataFrame, result: TrainingResult) -> None:
    altered = frame.copy()
    test_rows = altered["year"] == 2024
    rng = np.random.default_rng(0)
    altered.loc[test_rows, "target"] = rng.permutation(1.0 - altered.loc[test_rows, "target"].to_numpy())
    again = train_candidates(altered, "current", recall_target=TARGET, seed=3)
    X = encode_frame(frame, "current")
    for kind, candidate in result.candidates.items():
        assert again.candidates[kind].bundle.threshold == candidate.bundle.threshold
        np.testing.assert_array_equal(again.candidates[kind].bundle.predict_proba(X), candidate.bundle.predict_proba(X))
        assert again.candidates[kind].test_metrics != candidate.test_metrics  # the test year did change
    assert again.chosen == result.chosen  # chosen on the training years only


def test_calibrated_probabilities_beat_the_base_rate(result: TrainingResult) -> None:
    for kind in ("lightgbm", "logistic"):
        candidate = result.candidates[kind]
        score = candidate.test_predictions.y_score
        assert np.all((score >= 0) & (score <= 1))
        assert candidate.test_metrics["brier"] < candidate.test_metrics["brier_base_rate"]
        assert candidate.test_metrics["roc_auc"] > 0.8
    assert result.chosen in ("lightgbm", "logistic")  # the noise-only rule must not win here


def test_select_on_test_year_is_available(frame: pd.DataFrame) -> None:
    result = train_candidates(frame, "current", recall_target=TARGET, seed=3, kinds=("rule",), select_on="test")
    assert result.chosen == "rule" and "test-year" in result.selection_rule


def test_same_seed_same_scores(frame: pd.DataFrame) -> None:
    X = encode_frame(frame, "current")
    first, oof_first = fit_candidate("lightgbm", frame, "current", recall_target=TARGET, seed=9)
    second, oof_second = fit_candidate("lightgbm", frame, "current", recall_target=TARGET, seed=9)
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))
    np.testing.assert_array_equal(oof_first, oof_second)
    assert first.metadata["params"]["num_boost_round"] >= 20


def test_grouped_cv_with_one_labelled_year() -> None:
    one_year = make_feature_frame("next_year", years=(2023, 2024), n_per_year=200, seed=2)
    one_year.loc[one_year["year"] == 2024, "target"] = np.nan  # next year not yet known
    result = train_candidates(one_year, "next_year", recall_target=TARGET, seed=1, kinds=("logistic", "rule"))
    assert result.protocol == "grouped_cv" and result.test_year is None and result.train_years == (2023,)
    assert result.validation == "oof" and "out-of-fold" in result.selection_rule
    assert "GroupKFold" in result.card_metadata()["threshold_rule"]
    for candidate in result.candidates.values():
        assert candidate.test_metrics is candidate.oof_metrics
        assert candidate.bundle.metadata["protocol"] == "grouped_cv"
        assert candidate.bundle.metadata["validation"] == "oof"
        assert candidate.test_metrics["recall"] >= TARGET
    assert [link[0] for link in result.candidates["rule"].bundle.metadata["params"]["links"]] == [
        "defasagem",
        "prev_defasagem",
        "idade_menos_fase",
    ]


def test_refit_on_all_years(frame: pd.DataFrame, result: TrainingResult) -> None:
    refit = refit_on_all(result.candidates["logistic"], frame, recall_target=TARGET, seed=3)
    assert refit.kind == "logistic" and refit.task == "current"
    assert refit.metadata["train_years"] == [2022, 2023, 2024]
    assert refit.metadata["protocol"] == "refit_all_years"
    assert refit.metadata["evaluated_as"]["test_year"] == 2024
    # Threshold re-chosen one year ahead: fitted on 2022-2023, validated on 2024.
    assert refit.metadata["validation"] == "forward" and refit.metadata["validation_years"] == [2024]
    assert refit.metadata["validation_metrics"]["recall"] >= TARGET
    assert refit.metadata["n_train"] == frame["target"].notna().sum()
    from_bundle = refit_on_all(result.candidates["rule"].bundle, frame, recall_target=TARGET, seed=3)
    assert from_bundle.kind == "rule"


def test_planted_leak_is_caught_and_named() -> None:
    frame = make_feature_frame("next_year", n_per_year=150, seed=4)
    rng = np.random.default_rng(0)
    frame["ian"] = frame["target"] * 5 + rng.normal(0, 0.05, len(frame))  # allowed by policy, but leaks
    flagged = audit_leakage(frame, "next_year", max_auc=0.98)
    assert [name for name, _ in flagged] == ["ian"] and flagged[0][1] > 0.99
    with pytest.raises(LeakageError, match=r"ian \(AUC 1\.000\)"):
        assert_no_leakage(frame, "next_year", max_auc=0.98)
    with pytest.raises(LeakageError, match="ian"):
        train_candidates(frame, "next_year", recall_target=TARGET, seed=0, audit_max_auc=0.98)


def test_audit_checks_explicit_columns_and_categoricals() -> None:
    frame = make_feature_frame("current", n_per_year=100, seed=6)
    frame["leaky"] = np.where(frame["target"] == 1, "atrasado", "em dia")
    frame["copy"] = frame["target"] + 0.01
    flagged = dict(audit_leakage(frame, "current", max_auc=0.98, columns=["leaky", "copy", "ida", "absent"]))
    assert set(flagged) == {"leaky", "copy"}
    aucs = feature_aucs(frame, "current", columns=["absent", "genero"])
    assert aucs["absent"] is None and 0.5 <= aucs["genero"] < 0.7
    with pytest.raises(LeakageError, match="ian"):  # the policy forbids it before any AUC
        assert_no_leakage(frame.assign(ian=1.0), "current", max_auc=0.98, columns=["ida", "ian"])
    assert feature_aucs(frame.assign(target=1.0), "current", columns=["ida"]) == {"ida": None}


def test_choose_threshold_is_the_highest_cut_reaching_the_recall() -> None:
    y = np.array([1, 1, 1, 1, 0, 0, 1, 0, 1, 1], dtype=float)
    proba = np.array([0.9, 0.8, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    assert choose_threshold(y, proba, 0.5) == 0.7
    assert choose_threshold(y, proba, 0.6) == 0.4
    assert choose_threshold(y, proba, 1.0) == 0.1
    with pytest.raises(ValueError, match="positive"):
        choose_threshold(np.zeros(3), proba[:3], 0.9)


def test_calibrator_kind_depends_on_rows() -> None:
    rng = np.random.default_rng(1)
    score = rng.normal(size=1200)
    y = (score + rng.normal(size=1200) > 0).astype(float)
    isotonic = fit_calibrator(score, y)
    platt = fit_calibrator(score[:300], y[:300])
    assert (isotonic.method, platt.method) == ("isotonic", "platt")
    for calibrator in (isotonic, platt):
        proba = calibrator(np.sort(score))
        assert np.all(np.diff(proba) >= -1e-12) and proba.min() >= 0 and proba.max() <= 1


def test_fit_candidate_rejects_bad_input(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="kind"):
        fit_candidate("forest", frame, "current", recall_target=TARGET, seed=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="single class"):
        fit_candidate("rule", frame.assign(target=1.0), "current", recall_target=TARGET, seed=0)
    with pytest.raises(ValueError, match="two students"):
        fit_candidate("rule", frame.assign(ra="same"), "current", recall_target=TARGET, seed=0)


def test_a_target_recomputed_from_two_features_is_warned() -> None:
    """Each feature alone passes the audit; together they are the target (like age and phase)."""
    frame = make_feature_frame("current", n_per_year=150, seed=12)
    frame["target"] = (frame["mat"].fillna(5.0) > frame["por"].fillna(5.0)).astype(float)
    result = train_candidates(frame, "current", recall_target=TARGET, seed=0, kinds=("logistic",), audit_max_auc=0.95)
    assert max(auc for auc in result.feature_aucs.values() if auc is not None) < 0.95
    assert len(result.warnings) == 1 and result.warnings[0].startswith("logistic: out-of-fold ROC-AUC")
    assert result.card_metadata()["warnings"] == result.warnings


def test_forward_split_positions_and_edge_cases() -> None:
    years = np.array([2023, 2022, 2023, 2022, 2022])
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    fit_rows, held_out = forward_split(years, y)  # type: ignore[misc]
    np.testing.assert_array_equal(fit_rows, [1, 3, 4])
    np.testing.assert_array_equal(held_out, [0, 2])
    assert forward_split(np.full(5, 2022), y) is None  # one year: grouped CV instead
    assert forward_split(years, np.array([1.0, 1.0, 0.0, 1.0, 1.0])) is None  # earlier years one class
    assert forward_split(years, np.array([1.0, 0.0, 1.0, 1.0, 0.0])) is None  # latest year one class


def test_forward_validation_sets_the_threshold_and_the_rounds(frame: pd.DataFrame) -> None:
    """Relabelling the latest training year moves the threshold; the OOF scores alone would not see it."""
    base, _ = fit_candidate("lightgbm", frame, "current", recall_target=TARGET, seed=3)
    shifted = frame.copy()
    latest = shifted["year"] == 2023
    rng = np.random.default_rng(5)
    # A later year in which more students are behind than the earlier one's model expects.
    flip = latest & (shifted["target"] == 0) & (rng.random(len(shifted)) < 0.5)
    shifted.loc[flip, "target"] = 1.0
    moved, _ = fit_candidate("lightgbm", shifted, "current", recall_target=TARGET, seed=3)
    assert moved.metadata["validation_metrics"]["recall"] >= TARGET
    assert moved.threshold < base.threshold  # more positives to reach on the validation year
    params = base.metadata["params"]
    assert params["num_boost_round"] >= 20 and params["oof_rounds"] >= 20


def test_calibration_keeps_the_ranking_of_near_separable_scores() -> None:
    """Isotonic alone maps near-separable scores to ties at 0 and 1; the tie-breaker keeps the order."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    y = np.repeat([0.0, 1.0], 700)
    score = np.where(y == 1, 3.0, -3.0) + rng.normal(0, 0.3, y.size)  # separable on these rows
    calibrator = fit_calibrator(score, y)
    assert calibrator.method == "isotonic" and calibrator.tie_weight > 0
    proba = calibrator(score)
    assert np.unique(proba).size == np.unique(score).size  # no two scores share a probability
    assert np.all(np.diff(calibrator(np.sort(score))) > 0)
    assert np.max(np.abs(proba - y)) < 0.02  # still calibrated: the blend moves it by < 1 point
    # A later year whose students all score inside the "behind" block, where only the order
    # within the block tells them apart (as a new definition of the target would).
    later = rng.normal(3.0, 0.3, 400)
    y_later = (later - 3.0 + rng.normal(0, 0.2, 400) > 0).astype(float)
    assert roc_auc_score(y_later, calibrator(later)) == pytest.approx(roc_auc_score(y_later, later))
    plain = IsotonicRegression(out_of_bounds="clip").fit(score, y).predict(later)
    assert roc_auc_score(y_later, plain) < roc_auc_score(y_later, later) - 0.1  # what the blend prevents


def test_wilson_bound_matches_the_formula_and_its_coverage() -> None:
    # statsmodels proportion_confint(90, 100, alpha=0.1, method="wilson") gives 0.83964 as lower end.
    assert recall_lower_bound(90, 100, 0.95) == pytest.approx(0.83964, abs=1e-5)
    assert recall_lower_bound(90, 100, 0.5) == pytest.approx(0.9)
    assert recall_lower_bound(0, 10, 0.95) == 0.0 and recall_lower_bound(10, 10, 0.95) < 1.0
    # Exact coverage: with a true recall of 0.90, how often does the bound claim >= 0.90?
    hits = np.arange(401)
    certified = np.array([recall_lower_bound(int(k), 400, 0.95) >= 0.9 for k in hits])
    assert binom.pmf(hits, 400, 0.9)[certified].sum() < 0.07  # ~5%, as a 95% bound should
    at_half = np.array([recall_lower_bound(int(k), 400, 0.5) >= 0.9 for k in hits])
    assert 0.4 < binom.pmf(hits, 400, 0.9)[at_half].sum() < 0.6  # aiming at the target: a coin flip
    for bad in ((11, 10, 0.95), (-1, 10, 0.95), (1, 0, 0.95), (5, 10, 1.0), (5, 10, 0.4)):
        with pytest.raises(ValueError):
            recall_lower_bound(*bad)


def test_operating_recall_is_the_smallest_certified_recall() -> None:
    for positives in (50, 366, 550, 2000):
        aim = operating_recall(positives, 0.9, 0.95)
        hits = round(aim * positives)
        assert recall_lower_bound(hits, positives, 0.95) >= 0.9 > recall_lower_bound(hits - 1, positives, 0.95)
        assert operating_recall(positives, 0.9, 0.5) == math.ceil(0.9 * positives) / positives
    assert 0.92 < operating_recall(550, 0.9) < 0.925  # the real validation years: ~2 points
    assert operating_recall(2000, 0.9) < operating_recall(366, 0.9)  # more rows, smaller margin
    assert operating_recall(10, 0.9) == 1.0  # cannot be certified: find every positive
    assert operating_recall(10, 0.0) == 0.0
    with pytest.raises(ValueError, match="positive"):
        operating_recall(0, 0.9)
    with pytest.raises(ValueError, match="recall_target"):
        operating_recall(10, 1.5)


def test_precision_at_recall_interpolates_between_cuts() -> None:
    y = np.array([1, 1, 0, 1, 0, 1, 0, 0], dtype=float)
    fine = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    assert precision_at_recall(y, fine, 0.5) == pytest.approx(1.0)  # the top two rows
    assert precision_at_recall(y, fine, 0.75) == pytest.approx(3 / 4)
    assert precision_at_recall(y, fine, 1.0) == pytest.approx(4 / 6)
    # A coarse score: one tied block of all rows. Taken in random order, true and false
    # positives grow together, so precision is the block's share of positives at any recall.
    assert precision_at_recall(y, np.zeros(8), 0.5) == pytest.approx(0.5)
    # Half-way into a block of 2 positives and 2 negatives after a clean top row.
    coarse = np.array([2.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    y2 = np.array([1, 1, 1, 0, 0, 1, 0, 0], dtype=float)
    # recall 0.5 = 2 of 4 positives: the top row plus half of the block's 2 positives and 2 negatives.
    assert precision_at_recall(y2, coarse, 0.5) == pytest.approx(2 / 3)
    assert precision_at_recall(np.zeros(3), np.arange(3.0), 0.9) is None
    with pytest.raises(ValueError, match="recall"):
        precision_at_recall(y, fine, 0.0)
    with pytest.raises(ValueError, match="rows"):
        precision_at_recall(y, fine[:3], 0.5)


def test_precision_at_recall_ranks_scores_the_same_at_any_base_rate() -> None:
    rng = np.random.default_rng(4)
    y = (rng.random(600) < 0.6).astype(float)
    good = y + rng.normal(0, 0.7, y.size)
    poor = y + rng.normal(0, 1.5, y.size)
    negatives = y == 0
    # The same students, with every negative counted three times (base rate 60% -> ~33%).
    y_low = np.concatenate([y, y[negatives], y[negatives]])
    at = {
        name: (
            precision_at_recall(y, s, 0.9),
            precision_at_recall(y_low, np.concatenate([s, s[negatives], s[negatives]]), 0.9),
        )
        for name, s in (("good", good), ("poor", poor))
    }
    assert at["good"][0] > at["poor"][0] and at["good"][1] > at["poor"][1]
    assert at["good"][1] < at["good"][0]  # precision itself does move with the base rate


def test_threshold_aims_at_the_certified_recall(frame: pd.DataFrame) -> None:
    aimed, _ = fit_candidate("logistic", frame, "current", recall_target=TARGET, seed=3)
    plain, _ = fit_candidate("logistic", frame, "current", recall_target=TARGET, seed=3, recall_confidence=0.5)
    positives = aimed.metadata["validation_metrics"]["positives"]
    assert aimed.metadata["operating_recall"] == operating_recall(positives, TARGET, 0.95) > TARGET
    assert plain.metadata["operating_recall"] == math.ceil(TARGET * positives) / positives
    assert aimed.metadata["validation_metrics"]["recall"] >= aimed.metadata["operating_recall"]
    assert aimed.threshold < plain.threshold  # a lower cut, to find more students
    assert aimed.metadata["validation_metrics"]["precision_at_recall"] is not None


def test_a_flag_almost_everyone_baseline_does_not_win_at_a_high_base_rate() -> None:
    """F2 at each candidate's own threshold would choose the rule here; precision at a common recall does not."""
    frame = make_feature_frame("next_year", years=(2022,), n_per_year=500, seed=8)
    rng = np.random.default_rng(8)
    logit = 1.5 * (frame["idade_menos_fase"] - 8.5) - 0.5 * (frame["ida"].fillna(5.0) - 5.0)
    frame["target"] = (logit + rng.normal(0, 1, len(frame)) > -2.0).astype(float)  # ~80% behind
    frame["defasagem"] = np.where(rng.random(len(frame)) < 0.95, -1.0, 0.0)  # the rule flags ~everyone
    result = train_candidates(frame, "next_year", recall_target=TARGET, seed=0, kinds=("logistic", "rule"))
    rule, logistic = result.candidates["rule"].validation_metrics, result.candidates["logistic"].validation_metrics
    assert frame["target"].mean() > 0.7
    assert rule["recall"] > 0.95 and rule["f2"] > logistic["f2"]  # what the old key rewarded
    assert logistic["precision_at_recall"] > rule["precision_at_recall"]
    assert result.chosen == "logistic"
    assert "precision at recall" in result.selection_rule


def test_card_metadata_records_the_operating_recall(result: TrainingResult) -> None:
    meta = result.card_metadata()
    assert meta["recall_confidence"] == 0.95
    assert meta["operating_recall"] == result.best.bundle.metadata["operating_recall"] > TARGET
    assert "Wilson lower bound" in meta["threshold_rule"]
    for facts in meta["candidates"].values():
        assert facts["validation"]["operating_recall"] == meta["operating_recall"]
    chosen = result.best.validation_metrics["precision_at_recall"]
    assert all(c.validation_metrics["precision_at_recall"] <= chosen for c in result.candidates.values())
