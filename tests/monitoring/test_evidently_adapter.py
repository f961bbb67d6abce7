"""Tests of the Evidently adapter on real Evidently 0.7 runs (no mocks)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from monitoring.evidently_adapter import DriftResult, run_drift, write_report

NUMERIC = ["a", "b", "c"]
CATEGORICAL = ["g"]


def _frame(rng: np.random.Generator, n: int, a_mean: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "a": rng.normal(a_mean, 1.0, n),
            "b": rng.normal(0.0, 1.0, n),
            "c": rng.integers(0, 10, n).astype(float),
            "g": rng.choice(["x", "y", "z"], n),
        }
    )


def _shuffled(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same values in another order: the same distribution exactly, so no test can fire."""
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return _frame(np.random.default_rng(1), 300, 5.0)


@pytest.fixture(scope="module")
def shifted_result(reference: pd.DataFrame) -> DriftResult:
    current = _shuffled(reference, 2)
    current["a"] = np.random.default_rng(3).normal(8.0, 1.0, len(current))
    return run_drift(reference, current, numeric=NUMERIC, categorical=CATEGORICAL)


@pytest.fixture(scope="module")
def labelled() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(11)
    reference = _frame(rng, 300, 5.0)
    current = _frame(rng, 300, 5.0)
    for frame in (reference, current):
        frame["y"] = rng.integers(0, 2, len(frame))
        frame["proba"] = np.clip(0.35 * frame["y"] + rng.uniform(0.0, 0.65, len(frame)), 0.0, 1.0)
        # A threshold other than 0.5, as the recall-targeting model picks, so labels != proba > 0.5.
        frame["pred"] = (frame["proba"] >= 0.4).astype(int)
    current["a"] += 3.0
    return reference, current


def test_planted_shift_is_named(shifted_result: DriftResult) -> None:
    assert shifted_result.drifted_columns == ["a"]
    assert shifted_result.share_drifted == pytest.approx(1 / 4)
    assert shifted_result.column_tests["a"] == "K-S p_value"
    assert shifted_result.column_scores["a"] < shifted_result.column_thresholds["a"]
    for column in ("b", "c", "g"):
        assert shifted_result.column_scores[column] > shifted_result.column_thresholds[column]
    assert set(shifted_result.column_scores) == {"a", "b", "c", "g"}
    assert shifted_result.performance is None
    assert shifted_result.missing_drift_columns == []


def test_identical_data_has_no_drift(reference: pd.DataFrame) -> None:
    result = run_drift(reference, _shuffled(reference, 5), numeric=NUMERIC, categorical=CATEGORICAL)
    assert result.share_drifted == 0
    assert result.drifted_columns == []
    assert result.missing_share_current == {"a": 0.0, "b": 0.0, "c": 0.0, "g": 0.0}


def test_small_data(reference: pd.DataFrame) -> None:
    small = reference.head(30)
    current = small.assign(a=small["a"] + 5)
    result = run_drift(small, current, numeric=NUMERIC, categorical=CATEGORICAL)
    assert result.drifted_columns == ["a"]


def test_summary_json_is_strict_json(shifted_result: DriftResult) -> None:
    def refuse(token: str) -> None:
        raise AssertionError(f"{token} in JSON")

    text = json.dumps(shifted_result.as_json, allow_nan=False)
    document = json.loads(text, parse_constant=refuse)
    assert document["summary"]["drifted_columns"] == ["a"]
    assert document["summary"]["n_reference"] == 300
    types = {metric["config"]["type"] for metric in document["evidently"]["metrics"]}
    assert "evidently:metric_v2:ValueDrift" in types


def test_performance_matches_sklearn(labelled: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, current = labelled
    result = run_drift(
        reference,
        current,
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        target="y",
        prediction="pred",
        prediction_proba="proba",
    )
    assert result.performance is not None
    y, pred = current["y"], current["pred"]
    assert result.performance["recall"] == pytest.approx(recall_score(y, pred))
    assert result.performance["precision"] == pytest.approx(precision_score(y, pred))
    assert result.performance["f1"] == pytest.approx(f1_score(y, pred))
    assert result.performance["roc_auc"] == pytest.approx(roc_auc_score(y, current["proba"]))
    assert result.as_json["summary"]["n_labelled"] == 300
    assert "y" not in result.column_scores  # labels and predictions are not features
    assert "a" in result.drifted_columns  # drift survives the merge with the quality reports
    names = [test["name"] for test in result.as_json["evidently"]["tests"]]
    assert "Value Drift for column a" in names
    assert any(name.startswith("Recall metric") for name in names)
    assert any(name.startswith("RocAuc metric") for name in names)


def test_performance_uses_only_labelled_rows(labelled: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, current = labelled
    current = current.astype({"y": "float64"})
    current.loc[:99, "y"] = np.nan
    result = run_drift(reference, current, numeric=NUMERIC, categorical=CATEGORICAL, target="y", prediction="pred")
    kept = current.iloc[100:]
    assert result.performance is not None
    assert result.performance["recall"] == pytest.approx(recall_score(kept["y"].astype(int), kept["pred"]))
    assert "roc_auc" not in result.performance
    assert result.as_json["summary"]["n_labelled"] == 200


def test_probabilities_only_are_cut_at_one_half(labelled: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, current = labelled
    result = run_drift(
        reference, current, numeric=NUMERIC, categorical=CATEGORICAL, target="y", prediction_proba="proba"
    )
    assert result.performance is not None
    assert result.performance["recall"] == pytest.approx(recall_score(current["y"], current["proba"] >= 0.5))


def test_one_class_of_labels_does_not_crash(labelled: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, current = labelled
    positives = current[current["y"] == 1]
    result = run_drift(
        reference, positives, numeric=NUMERIC, categorical=CATEGORICAL, target="y", prediction_proba="proba"
    )
    assert result.performance is not None
    assert "roc_auc" not in result.performance
    assert result.performance["recall"] == pytest.approx(float((positives["proba"] >= 0.5).mean()))


def test_one_class_with_labels_and_probabilities(labelled: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, current = labelled
    negatives = current[current["y"] == 0]
    result = run_drift(
        reference,
        negatives,
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        target="y",
        prediction="pred",
        prediction_proba="proba",
    )
    assert result.performance is not None
    assert "roc_auc" not in result.performance
    assert result.performance["accuracy"] == pytest.approx(float((negatives["pred"] == 0).mean()))


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"target": "y"}, "no prediction column"),
        ({"target": "absent", "prediction": "pred"}, "target column not in current"),
        ({"target": "y", "prediction": "absent"}, "prediction column not in current"),
        ({"target": None, "prediction": "pred"}, "no target"),
    ],
)
def test_no_performance_without_labels_and_predictions(
    labelled: tuple[pd.DataFrame, pd.DataFrame], kwargs: dict[str, str | None], why: str
) -> None:
    reference, current = labelled
    result = run_drift(reference, current, numeric=NUMERIC, categorical=CATEGORICAL, **kwargs)
    assert result.performance is None, why


def test_no_labels_at_all(labelled: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, current = labelled
    current = current.assign(y=np.nan)
    result = run_drift(reference, current, numeric=NUMERIC, categorical=CATEGORICAL, target="y", prediction="pred")
    assert result.performance is None


def test_labels_must_be_binary(labelled: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, current = labelled
    with pytest.raises(ValueError, match="'y' must hold binary labels"):
        run_drift(
            reference, current.assign(y=2), numeric=NUMERIC, categorical=CATEGORICAL, target="y", prediction="pred"
        )


def test_all_null_columns_are_missing_drift(reference: pd.DataFrame) -> None:
    ref = reference.assign(gone=1.0, empty_both=np.nan, new=np.nan, cat_gone="k")
    current = _shuffled(reference, 6).assign(gone=np.nan, empty_both=np.nan, new=2.0, cat_gone=None)
    result = run_drift(
        ref, current, numeric=[*NUMERIC, "gone", "empty_both", "new"], categorical=[*CATEGORICAL, "cat_gone"]
    )
    assert result.missing_drift_columns == ["gone", "new", "cat_gone"]
    assert result.drifted_columns == ["gone", "new", "cat_gone"]
    assert result.share_drifted == pytest.approx(3 / 8)
    assert result.missing_share_current["gone"] == 1.0
    assert result.missing_share_reference["new"] == 1.0
    assert result.missing_share_reference["empty_both"] == 1.0
    assert "gone" not in result.column_scores
    assert "Missing drift" in result.html


def test_every_column_empty_still_gives_a_result(reference: pd.DataFrame) -> None:
    ref = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    current = pd.DataFrame({"x": [np.nan] * 3})
    result = run_drift(ref, current, numeric=["x"], categorical=[])
    assert result.drifted_columns == ["x"]
    assert result.share_drifted == 1.0
    assert result.html.startswith("<!DOCTYPE html>")


def test_partial_nulls_and_odd_types(reference: pd.DataFrame) -> None:
    ref = reference.assign(g=pd.Categorical(reference["g"]), c=reference["c"].astype("Int64"))
    current = _shuffled(reference, 8)
    current.loc[:49, "b"] = np.nan
    current.loc[:49, "g"] = None
    result = run_drift(ref, current, numeric=NUMERIC, categorical=CATEGORICAL)
    assert result.missing_share_current["b"] == pytest.approx(50 / 300)
    assert result.missing_share_current["g"] == pytest.approx(50 / 300)
    assert "a" not in result.drifted_columns


@pytest.mark.parametrize(
    ("numeric", "categorical", "message"),
    [
        ([], [], "at least one"),
        (["a", "a"], [], "listed twice"),
        (["a", "nope"], [], "no column"),
    ],
)
def test_bad_column_lists(reference: pd.DataFrame, numeric: list[str], categorical: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_drift(reference, reference, numeric=numeric, categorical=categorical)


def test_non_numeric_value_is_named(reference: pd.DataFrame) -> None:
    current = reference.astype({"b": object})
    current.loc[3, "b"] = "INCLUIR"
    with pytest.raises(ValueError, match="column 'b' of the current frame is not numeric"):
        run_drift(reference, current, numeric=NUMERIC, categorical=CATEGORICAL)


def test_empty_frame_is_an_error(reference: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="current frame has no rows"):
        run_drift(reference, reference.head(0), numeric=NUMERIC, categorical=CATEGORICAL)


def test_write_report_is_offline_and_carries_meta(shifted_result: DriftResult, tmp_path: Path) -> None:
    meta = {
        "run_id": "r1",
        "created_at": pd.Timestamp("2025-01-02T03:04:05Z").to_pydatetime(),
        "task": "current",
        "verdict": "ok",
        "score_psi": np.float64(0.05),
    }
    html_path, json_path = write_report(shifted_result, tmp_path / "drift" / "r1", meta=meta)
    assert html_path == tmp_path / "drift" / "r1" / "report.html"
    page = html_path.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\ssrc\s*=\s*[\"']?(https?:)?//", page, re.IGNORECASE)
    assert not re.search(r"<link[^>]*\shref\s*=\s*[\"']?(https?:)?//", page, re.IGNORECASE)
    assert "window.drawDashboard" in page
    assert len(page) > 1_000_000  # the embedded Evidently bundle, not a loader
    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert document["run_id"] == "r1"
    assert document["created_at"] == "2025-01-02T03:04:05+00:00"
    assert document["score_psi"] == 0.05
    assert document["summary"]["drifted_columns"] == ["a"]
    assert sorted(p.name for p in html_path.parent.iterdir()) == ["report.html", "report.json"]


def test_write_report_refuses_reserved_meta(shifted_result: DriftResult, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserved"):
        write_report(shifted_result, tmp_path, meta={"summary": {}})
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        write_report(shifted_result, tmp_path, meta={"odd": object()})
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_write_report_converts_numpy_and_paths(shifted_result: DriftResult, tmp_path: Path) -> None:
    meta = {"rows": np.int64(3), "source": Path("/data/x.csv"), "psi": float("nan")}
    _, json_path = write_report(shifted_result, tmp_path, meta=meta)
    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert (document["rows"], document["source"], document["psi"]) == (3, "/data/x.csv", None)


def test_failed_write_leaves_no_temporary_file(shifted_result: DriftResult, tmp_path: Path) -> None:
    unencodable = dataclasses.replace(shifted_result, html="\udc80")
    with pytest.raises(UnicodeEncodeError):
        write_report(unencodable, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_realistic_size_is_fast() -> None:
    rng = np.random.default_rng(21)
    numeric = [f"n{i}" for i in range(16)]
    categorical = [f"k{i}" for i in range(4)]

    def frame() -> pd.DataFrame:
        data = {name: rng.normal(5.0, 2.0, 1000) for name in numeric}
        data |= {name: rng.choice(["a", "b", "c", "d"], 1000) for name in categorical}
        out = pd.DataFrame(data)
        out["y"] = rng.integers(0, 2, 1000)
        out["proba"] = rng.uniform(0.0, 1.0, 1000)
        out["pred"] = (out["proba"] > 0.3).astype(int)
        return out

    reference, current = frame(), frame()
    result = run_drift(
        reference,
        current,
        numeric=numeric,
        categorical=categorical,
        target="y",
        prediction="pred",
        prediction_proba="proba",
    )
    assert result.performance is not None
