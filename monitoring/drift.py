"""Drift checks against a champion: reference and current frames, scores, PSI and the verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.featuresets import derive, encode, encode_frame, feature_specs
from monitoring.evidently_adapter import DriftResult, run_drift
from monitoring.psi import psi


@dataclass
class Thresholds:
    """When drift calls for retraining (settings ``PASSOS_DRIFT_*``)."""

    share_drifted: float
    score_psi: float
    recall_drop: float


@dataclass
class DriftCheck:
    """The outcome of comparing one current frame with the champion's reference."""

    result: DriftResult
    score_psi: float | None
    verdict: str
    reasons: list[str] = field(default_factory=list)
    performance: dict[str, float] | None = None


def fit_years(metadata: dict[str, Any]) -> list[int]:
    """The years the champion was fitted on (all labelled years when it was refitted)."""
    years = list(metadata.get("train_years") or [])
    if metadata.get("served_model") == "refit_all_years" and metadata.get("test_year") is not None:
        years.append(int(metadata["test_year"]))
    return sorted(set(years))


def frame_from_log(logged: pd.DataFrame, task: str) -> pd.DataFrame:
    """Feature columns (as the model saw them) from the prediction log's raw inputs."""
    names = [spec.name for spec in feature_specs(task)]
    if logged.empty:
        return pd.DataFrame(columns=[*names, "risk_score"])
    records = []
    for record in logged.to_dict("records"):
        clean = {k: v for k, v in record.items() if not (isinstance(v, float) and math.isnan(v))}
        records.append(derive(clean, year=clean.get("year")))
    matrix = encode(records, task)
    frame = pd.DataFrame(matrix, columns=names)
    for spec in feature_specs(task):
        if spec.kind == "categorical":
            codes = frame[spec.name]
            frame[spec.name] = [spec.categories[int(c)] if c == c else None for c in codes]
    frame["risk_score"] = logged["risk_score"].to_numpy()
    return frame


def check(
    model: Any,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    task: str,
    thresholds: Thresholds,
    champion_recall: float | None,
) -> DriftCheck:
    """Data drift per feature, score PSI, missing-value drift and, with labels, real performance.

    ``reference`` and ``current`` hold the task's feature columns (``current`` may also hold
    ``target``, and ``risk_score`` when the scores are already known, e.g. from the log).
    """
    specs = feature_specs(task)
    numeric = [s.name for s in specs if s.kind == "numeric"]
    categorical = [s.name for s in specs if s.kind == "categorical"]
    ref = reference.copy()
    cur = current.copy()
    ref["risk_score"] = model.predict_proba(encode_frame(ref, task)) if len(ref) else []
    if "risk_score" not in cur or cur["risk_score"].isna().all():
        cur["risk_score"] = model.predict_proba(encode_frame(cur, task)) if len(cur) else []
    cur["prediction"] = (cur["risk_score"] >= model.threshold).astype(int)
    labelled = "target" in cur and cur["target"].notna().any()
    for frame in (ref, cur):
        for name in numeric:
            frame[name] = pd.to_numeric(frame[name], errors="coerce")
        for name in categorical:
            frame[name] = frame[name].astype("object")
    if labelled:
        cur["target"] = cur["target"].astype("float")
    result = run_drift(
        ref[[*numeric, *categorical]],
        cur[[*numeric, *categorical, *(["target", "prediction", "risk_score"] if labelled else [])]],
        numeric=numeric,
        categorical=categorical,
        target="target" if labelled else None,
        prediction="prediction" if labelled else None,
        prediction_proba="risk_score" if labelled else None,
    )
    score_psi = None
    finite_ref = ref["risk_score"].dropna()
    finite_cur = cur["risk_score"].dropna()
    if len(finite_ref) and len(finite_cur):
        score_psi = psi(finite_ref.to_numpy(dtype=float), finite_cur.to_numpy(dtype=float))
    reasons = []
    if result.share_drifted >= thresholds.share_drifted:
        reasons.append(
            f"{result.share_drifted:.0%} of features drifted (limit {thresholds.share_drifted:.0%}): "
            + ", ".join(result.drifted_columns)
        )
    if score_psi is not None and score_psi >= thresholds.score_psi:
        reasons.append(f"score PSI {score_psi:.3f} >= {thresholds.score_psi:.2f}")
    performance = result.performance
    recall = (performance or {}).get("recall")
    if recall is not None and champion_recall is not None and recall < champion_recall - thresholds.recall_drop:
        reasons.append(
            f"recall {recall:.3f} fell below the champion's {champion_recall:.3f} by more than {thresholds.recall_drop:.2f}"
        )
    verdict = "retrain recommended" if reasons else "ok"
    return DriftCheck(
        result, None if score_psi is None else float(np.round(score_psi, 6)), verdict, reasons, performance
    )
