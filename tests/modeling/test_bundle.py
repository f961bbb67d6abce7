"""ModelBundle: probabilities, reasons, behaviour, pickling, version checks, speed."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from features.featuresets import encode_frame, feature_names
from modeling.bundle import Calibrator, ModelBundle
from modeling.training import fit_candidate
from passos.errors import ModelInvalidError
from tests.factories import make_feature_frame

logger = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_feature_frame("current", years=(2022, 2023), n_per_year=300, seed=5)


@pytest.fixture(scope="module")
def bundles(frame: pd.DataFrame) -> dict[str, ModelBundle]:
    return {
        kind: fit_candidate(kind, frame, "current", recall_target=0.9, seed=7)[0]
        for kind in ("lightgbm", "logistic", "rule")
    }


@pytest.fixture(scope="module")
def X(frame: pd.DataFrame) -> np.ndarray:
    return encode_frame(frame, "current")


KINDS = ("lightgbm", "logistic", "rule")


@pytest.mark.parametrize("kind", KINDS)
def test_probabilities_and_labels(bundles: dict[str, ModelBundle], X: np.ndarray, kind: str) -> None:
    bundle = bundles[kind]
    proba = bundle.predict_proba(X)
    assert proba.shape == (X.shape[0],)
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_array_equal(bundle.predict_label(X), proba >= bundle.threshold)
    assert bundle.predict_proba(X[0]).shape == (1,)  # one row as a 1-D vector


@pytest.mark.parametrize("kind", KINDS)
def test_reasons_are_positive_and_sorted(bundles: dict[str, ModelBundle], X: np.ndarray, kind: str) -> None:
    bundle = bundles[kind]
    reasons = bundle.reasons(X[:50], top=3)
    assert len(reasons) == 50
    assert any(reasons), "some row must have a reason"
    for row, listed in zip(X[:50], reasons, strict=True):
        assert len(listed) <= 3
        pushes = [r["contribution"] for r in listed]
        assert all(p > 0 for p in pushes)
        assert pushes == sorted(pushes, reverse=True)
        for reason in listed:
            j = bundle.feature_names.index(reason["feature"])
            labels = bundle.categories.get(reason["feature"])
            if labels is not None:
                assert reason["value"] == labels[int(row[j])]
            elif np.isnan(row[j]):
                assert reason["value"] is None
            else:
                assert reason["value"] == row[j]
    proba, explained = bundle.explain(X[:50])
    np.testing.assert_allclose(proba, bundle.predict_proba(X[:50]), rtol=0, atol=1e-12)  # SHAP sums to the raw score
    assert explained == reasons


def test_lightgbm_reasons_are_exact_shap(bundles: dict[str, ModelBundle], X: np.ndarray) -> None:
    """The ensemble's SHAP values are the mean of its members' exact tree SHAP (SHAP is linear)."""
    bundle = bundles["lightgbm"]
    assert len(bundle.members) > 1
    contrib = np.mean([m.predict(X[:20], pred_contrib=True) for m in bundle.members], axis=0)
    np.testing.assert_allclose(contrib.sum(axis=1), bundle.raw_score(X[:20]), atol=1e-9)
    np.testing.assert_allclose(bundle.contributions(X[:20]), contrib[:, :-1], rtol=0, atol=1e-9)
    top = bundle.reasons(X[:1], top=len(bundle.feature_names))[0]
    known = ~np.isnan(X[0])
    expected = sorted(c for c, k in zip(contrib[0, :-1], known, strict=True) if c > 0 and k)[::-1]
    np.testing.assert_allclose([r["contribution"] for r in top], expected, rtol=0, atol=1e-9)


def test_a_feature_that_was_not_sent_is_never_a_reason(bundles: dict[str, ModelBundle], X: np.ndarray) -> None:
    for bundle in bundles.values():
        row = X[:1].copy()
        row[0, ::2] = np.nan  # half the fields unknown
        for reason in bundle.reasons(row, top=len(bundle.feature_names))[0]:
            assert reason["value"] is not None
            assert bundle.feature_names.index(reason["feature"]) % 2 == 1


def test_logistic_contributions_add_up_to_the_log_odds(bundles: dict[str, ModelBundle], X: np.ndarray) -> None:
    model = bundles["logistic"].estimator
    np.testing.assert_allclose(model.contributions(X).sum(axis=1) + model.intercept, model.raw_score(X))


def test_rule_fires_on_last_years_setback(bundles: dict[str, ModelBundle]) -> None:
    bundle = bundles["rule"]
    names = bundle.feature_names
    row = np.full(len(names), np.nan)
    row[names.index("prev_defasagem")] = -2.0
    row[names.index("idade_menos_fase")] = 0.0
    assert bundle.reasons(row) == [[{"feature": "prev_defasagem", "value": -2.0, "contribution": 2.0}]]
    row[names.index("prev_defasagem")] = 1.0
    assert bundle.reasons(row) == [[]]
    row[names.index("prev_defasagem")] = np.nan
    cut = bundle.estimator.links[-1][2]
    row[names.index("idade_menos_fase")] = cut + 3
    assert bundle.reasons(row)[0][0]["feature"] == "idade_menos_fase"
    assert bundle.raw_score(np.full(len(names), np.nan)).tolist() == [0.0]


def test_lower_ida_never_lowers_the_risk(bundles: dict[str, ModelBundle], X: np.ndarray) -> None:
    """Behavioural: LightGBM is monotone in IDA (a constraint), so this holds for every row."""
    bundle = bundles["lightgbm"]
    j = bundle.feature_names.index("ida")
    known = X[~np.isnan(X[:, j])]
    lower = known.copy()
    lower[:, j] = np.maximum(0.0, known[:, j] - 5.0)
    before, after = bundle.predict_proba(known), bundle.predict_proba(lower)
    assert np.all(after >= before - 1e-12)
    assert after.mean() > before.mean()


@pytest.mark.parametrize("kind", KINDS)
def test_pickle_round_trip_is_identical(
    bundles: dict[str, ModelBundle], X: np.ndarray, kind: str, tmp_path: Path
) -> None:
    bundle = bundles[kind]
    path = bundle.save(tmp_path / "nested" / "model.joblib")
    loaded = ModelBundle.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), bundle.predict_proba(X))
    assert loaded.reasons(X[:10]) == bundle.reasons(X[:10])
    assert loaded.threshold == bundle.threshold and loaded.feature_names == feature_names("current")


@pytest.mark.parametrize("kind", KINDS)
def test_predict_many_in_chunks(bundles: dict[str, ModelBundle], X: np.ndarray, kind: str) -> None:
    bundle = bundles[kind]
    # BLAS may sum a chunk's matrix product in another order: equal up to rounding.
    np.testing.assert_allclose(bundle.predict_many(X, chunk_rows=7), bundle.predict_proba(X), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="chunk_rows"):
        bundle.predict_many(X, chunk_rows=0)


def test_wrong_width_is_named(bundles: dict[str, ModelBundle]) -> None:
    with pytest.raises(ValueError, match="columns"):
        bundles["logistic"].predict_proba(np.zeros((2, 3)))


@pytest.mark.parametrize("kind", KINDS)
def test_feature_importance_sums_to_one(bundles: dict[str, ModelBundle], kind: str) -> None:
    importance = bundles[kind].feature_importance()
    assert list(importance) == feature_names("current")
    assert sum(importance.values()) == pytest.approx(1.0)
    assert importance["idade_menos_fase"] > 0


def test_only_a_variant_its_own_gate_accepted_is_servable(bundles: dict[str, ModelBundle]) -> None:
    primary = bundles["logistic"]
    variant = dataclasses.replace(primary, variant="example", metadata={})
    assert primary.servable  # the primary's verdict is the version's, checked by the registry
    assert not variant.servable  # no verdict of its own
    for verdict, servable in (
        ({"accepted": False, "reasons": ["recall 0.5 < 0.9"]}, False),
        ({"accepted": True}, True),
    ):
        variant.metadata["gate"] = verdict
        assert variant.servable is servable
    variant.metadata["gate"] = "accepted"  # not a verdict
    assert not variant.servable


def test_calibrators_are_monotone_and_bounded() -> None:
    score = np.linspace(-10, 10, 101)
    isotonic = Calibrator("isotonic", x=(-1.0, 0.0, 1.0), y=(0.1, 0.5, 0.9))(score)
    platt = Calibrator("platt", a=2.0, b=-1.0)(score)
    for proba in (isotonic, platt):
        assert np.all(np.diff(proba) >= 0) and proba.min() >= 0 and proba.max() <= 1
    assert isotonic[0] == 0.1 and isotonic[-1] == 0.9


def test_version_checks(bundles: dict[str, ModelBundle], tmp_path: Path) -> None:
    bundle = bundles["lightgbm"]
    assert bundle.check_versions() == []
    minor = dataclasses.replace(bundle, versions={**bundle.versions, "scikit-learn": "0.0.1"})
    assert minor.check_versions() == [f"scikit-learn 0.0.1 at training, {bundle.versions['scikit-learn']} now"]
    major = dataclasses.replace(bundle, versions={**bundle.versions, "lightgbm": "1.0.0"})
    with pytest.raises(ModelInvalidError, match=r"lightgbm 1\.0\.0"):
        major.check_versions()
    other_format = dataclasses.replace(bundle, versions={**bundle.versions, "format": "0"})
    with pytest.raises(ModelInvalidError, match="format"):
        other_format.save(tmp_path / "old.joblib")
        ModelBundle.load(tmp_path / "old.joblib")


def test_load_rejects_other_files(tmp_path: Path) -> None:
    joblib.dump({"not": "a bundle"}, tmp_path / "dict.joblib")
    with pytest.raises(ModelInvalidError, match="dict"):
        ModelBundle.load(tmp_path / "dict.joblib")
    (tmp_path / "junk.joblib").write_bytes(b"not a pickle")
    with pytest.raises(ModelInvalidError, match="cannot be loaded"):
        ModelBundle.load(tmp_path / "junk.joblib")


@pytest.mark.parametrize("kind", KINDS)
def test_one_row_is_fast(bundles: dict[str, ModelBundle], X: np.ndarray, kind: str) -> None:
    """Measured for the report; the bound is loose so a busy CI machine does not fail it."""
    bundle = bundles[kind]
    row = X[:1].copy()
    bundle.explain(row)
    timings = []
    for _ in range(200):
        start = time.perf_counter()
        bundle.explain(row)
        timings.append(time.perf_counter() - start)
    median_ms = float(np.median(timings)) * 1e3
    logger.info("%s: one-row predict_proba + reasons median %.3f ms", kind, median_ms)
    assert median_ms < 5.0


@pytest.mark.parametrize("kind", KINDS)
def test_one_row_gets_the_reasons_it_gets_in_a_batch(bundles: dict[str, ModelBundle], X: np.ndarray, kind: str) -> None:
    bundle = bundles[kind]
    rows = X[:40].copy()
    rows[::3, ::2] = np.nan
    together = bundle.reasons(rows, top=5)
    assert any(together)
    assert [bundle.reasons(rows[i : i + 1], top=5)[0] for i in range(len(rows))] == together
    assert bundle.reasons(rows[:1], top=0) == [[]]


def test_percentiles_follow_a_new_reference(bundles: dict[str, ModelBundle]) -> None:
    bundle = dataclasses.replace(bundles["logistic"], reference=(0.1, 0.2, 0.3, 0.4))
    np.testing.assert_allclose(bundle.percentile(np.array([0.25, 0.4])), [50.0, 100.0])
    bundle.reference = (0.5, 0.6)
    np.testing.assert_allclose(bundle.percentile(np.array([0.25, 0.6])), [0.0, 100.0])
