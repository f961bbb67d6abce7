"""Training: honest splits, thresholds chosen without the test year, calibration, leakage audit."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
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
