"""Cross-fitted candidates, honest out-of-time evaluation, selection and the leakage audit."""

from __future__ import annotations

import dataclasses
import json
import logging
import math

import numpy as np
import pandas as pd
import pytest

from features.featuresets import encode_frame, feature_names
from modeling.calibration import CalibrationError
from modeling.evaluation import evaluate
from modeling.leakage import assert_no_leakage, audit_leakage, feature_aucs
from modeling.splits import split_out_of_time
from modeling.threshold import operating_recall
from modeling.training import TrainingResult, candidate_kinds, fit_candidate, train_candidates
from modeling.variants import variant_features
from passos.errors import LeakageError
from passos.settings import Settings
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


def test_result_records_protocol_and_years(frame: pd.DataFrame, result: TrainingResult) -> None:
    assert result.protocol == "out_of_time" and result.validation == "cross_fit"
    assert "out-of-fold precision" in result.selection_rule
    assert "other years" in result.card_metadata()["threshold_rule"]
    assert (result.train_years, result.test_year) == ((2022, 2023), 2024)
    # The factory's rule reads last year's setback, which is noise there: its scores do not rank
    # the rows, no increasing calibration exists, and it is left out with a warning.
    assert set(result.candidates) == {"lightgbm", "logistic"}
    assert any(w.startswith("rule: left out, no increasing calibration exists") for w in result.warnings)
    assert result.best is result.candidates[result.chosen]
    for candidate in result.candidates.values():
        meta = candidate.bundle.metadata
        assert meta["train_years"] == [2022, 2023] and meta["protocol"] == "out_of_time"
        # Two training years: one member per year left out, each scoring the year it did not see.
        assert meta["fold_scheme"] == "leave_one_year_out" and len(candidate.bundle.members) == 2
        assert candidate.validation_metrics["recall"] >= meta["operating_recall"]
        assert candidate.validation_metrics["n"] == frame.loc[frame["year"] < 2024, "target"].notna().sum()
        assert candidate.test_metrics["n"] == len(candidate.test_predictions.y_true)
        assert [r["n"] for r in candidate.test_metrics["reliability"]] and sum(
            r["n"] for r in candidate.test_metrics["reliability"]
        ) == candidate.test_metrics["n"]
        assert set(candidate.test_predictions.groups) == {"genero", "instituicao", "fase"}
    json.dumps(result.card_metadata(), allow_nan=False)


@pytest.mark.parametrize("kind", ["lightgbm", "logistic", "rule"])
def test_the_served_members_are_the_models_that_were_validated(frame: pd.DataFrame, kind: str) -> None:
    """Calibration and threshold come from the members' own out-of-fold scores, so they fit what is served."""
    rows = frame.loc[frame["target"].notna()].reset_index(drop=True)
    if kind == "rule":  # the rule reads last year's setback, noise in the factory: give it a signal
        noise = np.random.default_rng(5).random(len(rows)) < 0.2
        rows["prev_defasagem"] = np.where((rows["target"] == 1) ^ noise, -1.0, 0.0)
    bundle, oof = fit_candidate(kind, rows, "current", recall_target=TARGET, seed=3)  # type: ignore[arg-type]
    X = encode_frame(rows, "current")
    years = rows["year"].to_numpy()
    for member, year in zip(bundle.members, sorted(set(years)), strict=True):
        held = years == year
        single = dataclasses.replace(bundle, members=[member])
        np.testing.assert_allclose(single.predict_proba(X[held]), oof[held])
    y = rows["target"].to_numpy()
    assert evaluate(y, oof, bundle.threshold)["recall"] >= bundle.metadata["operating_recall"]
    # The ensemble scores the mean of its members' raw scores.
    raw = np.mean([dataclasses.replace(bundle, members=[m]).raw_score(X) for m in bundle.members], axis=0)
    np.testing.assert_allclose(bundle.raw_score(X), raw)


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
    result = train_candidates(frame, "current", recall_target=TARGET, seed=3, kinds=("logistic",), select_on="test")
    assert result.chosen == "logistic" and "test-year" in result.selection_rule


def test_same_seed_same_scores(frame: pd.DataFrame) -> None:
    X = encode_frame(frame, "current")
    first, oof_first = fit_candidate("lightgbm", frame, "current", recall_target=TARGET, seed=9)
    second, oof_second = fit_candidate("lightgbm", frame, "current", recall_target=TARGET, seed=9)
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))
    np.testing.assert_array_equal(oof_first, oof_second)
    assert first.metadata["params"]["num_boost_round"] >= 20


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


def test_fit_candidate_rejects_bad_input(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="kind"):
        fit_candidate("forest", frame, "current", recall_target=TARGET, seed=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="single class"):
        fit_candidate("rule", frame.assign(target=1.0), "current", recall_target=TARGET, seed=0)
    with pytest.raises(ValueError, match="two students"):
        one_year = frame.loc[frame["year"] == 2022]
        fit_candidate("rule", one_year.assign(ra="same"), "current", recall_target=TARGET, seed=0)


def test_a_target_recomputed_from_two_features_is_warned() -> None:
    """Each feature alone passes the audit; together they are the target (like age and phase)."""
    frame = make_feature_frame("current", n_per_year=150, seed=12)
    frame["target"] = (frame["mat"].fillna(5.0) > frame["por"].fillna(5.0)).astype(float)
    result = train_candidates(frame, "current", recall_target=TARGET, seed=0, kinds=("logistic",), audit_max_auc=0.95)
    assert max(auc for auc in result.feature_aucs.values() if auc is not None) < 0.95
    assert len(result.warnings) == 1 and result.warnings[0].startswith("logistic: out-of-fold ROC-AUC")
    assert result.card_metadata()["warnings"] == result.warnings


def test_a_flag_almost_everyone_baseline_does_not_win_at_a_high_base_rate() -> None:
    """F2 at each candidate's own threshold would choose the rule here; precision at a common recall does not."""
    frame = make_feature_frame("next_year", years=(2022,), n_per_year=500, seed=8)
    rng = np.random.default_rng(8)
    logit = 1.5 * (frame["idade_menos_fase"] - 8.5) - 0.5 * (frame["ida"].fillna(5.0) - 5.0)
    frame["target"] = (logit + rng.normal(0, 1, len(frame)) > -2.0).astype(float)  # ~80% behind
    # The rule flags ~everyone (a little more often the students who are behind, so it still ranks).
    frame["defasagem"] = np.where(rng.random(len(frame)) < np.where(frame["target"] == 1, 0.97, 0.85), -1.0, 0.0)
    result = train_candidates(frame, "next_year", recall_target=TARGET, seed=0, kinds=("logistic", "rule"))
    rule, logistic = result.candidates["rule"].validation_metrics, result.candidates["logistic"].validation_metrics
    assert frame["target"].mean() > 0.7
    assert rule["recall"] > 0.95 and rule["f2"] > logistic["f2"]  # what the old key rewarded
    assert logistic["precision_at_recall"] > rule["precision_at_recall"]
    assert result.chosen == "logistic"
    assert "precision at recall" in result.selection_rule


def test_grouped_cv_with_one_labelled_year() -> None:
    one_year = make_feature_frame("next_year", years=(2023, 2024), n_per_year=200, seed=2)
    one_year.loc[one_year["year"] == 2024, "target"] = np.nan  # next year not yet known
    result = train_candidates(one_year, "next_year", recall_target=TARGET, seed=1, kinds=("logistic", "rule"))
    assert result.protocol == "grouped_cv" and result.test_year is None and result.train_years == (2023,)
    assert "5 folds grouped by student" in result.card_metadata()["threshold_rule"]
    for candidate in result.candidates.values():
        assert candidate.test_metrics is candidate.oof_metrics
        assert candidate.bundle.metadata["protocol"] == "grouped_cv"
        assert candidate.bundle.metadata["fold_scheme"] == "grouped_cv" and len(candidate.bundle.members) == 5
        assert candidate.test_metrics["recall"] >= TARGET
    links = result.candidates["rule"].bundle.metadata["params"]["links"]
    assert [link[0] for link in links[0]] == ["defasagem", "prev_defasagem", "idade_menos_fase"]


def test_threshold_aims_at_the_certified_recall(frame: pd.DataFrame) -> None:
    aimed, _ = fit_candidate("logistic", frame, "current", recall_target=TARGET, seed=3)
    plain, _ = fit_candidate("logistic", frame, "current", recall_target=TARGET, seed=3, recall_confidence=0.5)
    positives = aimed.metadata["validation_metrics"]["positives"]
    assert aimed.metadata["operating_recall"] == operating_recall(positives, TARGET, 0.95) > TARGET
    assert plain.metadata["operating_recall"] == math.ceil(TARGET * positives) / positives
    assert aimed.metadata["validation_metrics"]["recall"] >= aimed.metadata["operating_recall"]
    assert aimed.threshold <= plain.threshold  # a lower cut, to find more students
    gap = aimed.metadata["threshold_gap"]
    assert gap["lowest"] <= aimed.threshold <= gap["highest"] and gap["gap_logit"] >= 0


def test_card_metadata_records_the_operating_recall(result: TrainingResult) -> None:
    meta = result.card_metadata()
    assert meta["recall_confidence"] == 0.95
    assert meta["operating_recall"] == result.best.bundle.metadata["operating_recall"] > TARGET
    assert "Wilson lower bound" in meta["threshold_rule"] and "middle" in meta["threshold_rule"]
    assert meta["threshold_gap"] == result.best.bundle.metadata["threshold_gap"]
    chosen = result.best.validation_metrics["precision_at_recall"]
    assert all(c.validation_metrics["precision_at_recall"] <= chosen for c in result.candidates.values())


def test_a_variant_never_sees_the_fields_it_was_not_built_for(frame: pd.DataFrame) -> None:
    frame = frame.assign(ips=frame["ips"] + np.where(frame["target"] == 1, -3.0, 3.0))  # a signal it can see
    bundle, _ = fit_candidate("lightgbm", frame, "current", recall_target=TARGET, seed=3, variant="example")
    used = set(variant_features("current", "example"))
    assert used == {"iaa", "ips", "ipp", "ipv", "fase"}  # inde is forbidden for current
    importance = bundle.feature_importance()
    assert all(importance[name] == 0.0 for name in feature_names("current") if name not in used)
    # fase is never missing in the factory's rows; the indicators are missing in ~10 %.
    assert bundle.required == ("fase",)
    X = encode_frame(frame, "current")
    other = X.copy()
    other[:, [feature_names("current").index("idade")]] = 99.0  # a field the variant must ignore
    np.testing.assert_array_equal(bundle.predict_proba(X), bundle.predict_proba(other))
    assert candidate_kinds("current", "example") == ("lightgbm", "logistic")
    assert candidate_kinds("current", "core") == ("lightgbm", "logistic", "rule")
    with pytest.raises(ValueError, match="variant"):
        variant_features("current", "tiny")


def test_without_any_calibratable_candidate_training_stops_naming_them(frame: pd.DataFrame) -> None:
    with pytest.raises(CalibrationError, match=r"no candidate of current/full can be calibrated: rule: left out"):
        train_candidates(frame, "current", recall_target=TARGET, seed=3, kinds=("rule",))


def test_the_train_task_leaves_out_a_variant_that_cannot_be_calibrated(
    frame: pd.DataFrame, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Of the example fields only IPS carries a signal, and it reverses between the training years, so
    each year's out-of-fold scores rank it backwards: neither candidate of the variant can be calibrated."""
    from flows.train import train_task

    sign = np.where(frame["year"] == 2022, 1.0, -1.0)
    reversed_ips = frame.assign(ips=frame["ips"] + sign * np.where(frame["target"] == 1, 2.0, -2.0))
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    log = logging.getLogger("flows.train")
    monkeypatch.setattr(log, "disabled", False)  # Prefect's logging configuration may disable it
    log.addHandler(handler)
    try:
        results = train_task.fn(settings, reversed_ips, "current")
    finally:
        log.removeHandler(handler)
    assert set(results) == {"full", "core"}
    text = " ".join(r.getMessage() for r in records)
    assert "variant example of current is not trained: no candidate of current/example" in text
