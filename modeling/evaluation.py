"""Classification metrics of a risk score at a threshold, overall, at alert budgets and by group.

Everything returned is JSON-serialisable: plain ``float``/``int``/``str``, ``None`` where a
figure is undefined (no positives, a single class, NaN).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from modeling.threshold import wilson_interval

BUDGETS: tuple[float, ...] = (0.10, 0.20, 0.30)
# A group with fewer students behind than this has a recall too uncertain to judge (its 95 %
# interval is wider than about +-0.1 near a recall of 0.9).
MIN_GROUP_POSITIVES = 30


def evaluate(
    y_true: np.ndarray,
    y_score: np.ndarray,
    threshold: float,
    *,
    groups: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Metrics of ``y_score >= threshold`` as an alert for ``y_true == 1``.

    Args:
        y_true: 0/1 labels (1 = behind, at risk), shape (n,).
        y_score: risk scores (calibrated probabilities for the model bundles), shape (n,).
        threshold: alert when ``y_score >= threshold``.
        groups: optional group labels per row, e.g. ``{"genero": [...], "fase": [...]}``; each
            gets a ``by_group`` table. Missing labels (None/NaN) are reported as ``"unknown"``.

    Returns:
        ``n, positives, prevalence, threshold, alerts, tp, fp, fn, tn, recall, precision, f1, f2,
        false_negative_rate, roc_auc, pr_auc, brier, brier_base_rate, at_budget, by_group``.
        ``precision`` is 0.0 when nothing is alerted (as sklearn's ``zero_division=0``);
        ``recall`` is None without positives; ``roc_auc``/``pr_auc`` are None with one class.
    """
    y = np.asarray(y_true, dtype=np.float64).ravel()
    s = np.asarray(y_score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} rows but y_score has {s.size}")
    if np.isnan(y).any() or not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y_true must hold only 0 and 1 (drop rows of unknown target first)")
    if np.isnan(s).any():
        raise ValueError(f"y_score holds {int(np.isnan(s).sum())} NaN values")
    positive = y == 1.0
    alert = s >= threshold
    out: dict[str, Any] = {"threshold": _clean(threshold)}
    out.update(_counts(positive, alert))
    n = positive.size
    out["prevalence"] = _clean(positive.mean()) if n else None
    both_classes = 0 < positive.sum() < n
    out["roc_auc"] = _clean(roc_auc_score(positive, s)) if both_classes else None
    out["pr_auc"] = _clean(average_precision_score(positive, s)) if both_classes else None
    out["brier"] = _clean(np.mean((s - y) ** 2)) if n else None
    base = positive.mean() if n else math.nan
    out["brier_base_rate"] = _clean(base * (1.0 - base))
    out["at_budget"] = _at_budget(positive, s)
    out["by_group"] = {name: _by_group(positive, alert, labels) for name, labels in (groups or {}).items()}
    return out


def _counts(positive: np.ndarray, alert: np.ndarray) -> dict[str, Any]:
    tp = int(np.sum(positive & alert))
    fp = int(np.sum(~positive & alert))
    fn = int(np.sum(positive & ~alert))
    tn = int(np.sum(~positive & ~alert))
    pos = tp + fn
    recall = tp / pos if pos else None
    precision = tp / (tp + fp) if tp + fp else 0.0
    return {
        "n": int(positive.size),
        "positives": pos,
        "alerts": tp + fp,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "recall": _clean(recall),
        "precision": _clean(precision),
        "f1": _clean(_fbeta(precision, recall, 1.0)),
        "f2": _clean(_fbeta(precision, recall, 2.0)),
        "false_negative_rate": _clean(None if recall is None else 1.0 - recall),
    }


def _fbeta(precision: float, recall: float | None, beta: float) -> float | None:
    if recall is None:
        return None
    b2 = beta * beta
    denominator = b2 * precision + recall
    return (1.0 + b2) * precision * recall / denominator if denominator > 0 else 0.0


def _at_budget(positive: np.ndarray, score: np.ndarray) -> dict[str, dict[str, Any]]:
    """Recall and precision when alerting exactly the top share of rows by score."""
    n = positive.size
    # Stable sort on the negated score: ties keep input order, so the result is reproducible.
    order = np.argsort(-score, kind="stable")
    cumulative = np.cumsum(positive[order])
    total = int(positive.sum())
    out: dict[str, dict[str, Any]] = {}
    for share in BUDGETS:
        k = min(n, math.ceil(share * n))
        hits = int(cumulative[k - 1]) if k else 0
        out[f"top_{round(share * 100)}pct"] = {
            "share": share,
            "alerts": k,
            "recall": _clean(hits / total) if total else None,
            "precision": _clean(hits / k) if k else None,
        }
    return out


def _by_group(positive: np.ndarray, alert: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, Any]]:
    values = np.asarray([_label(v) for v in np.asarray(labels, dtype=object).ravel()], dtype=object)
    if values.size != positive.size:
        raise ValueError(f"group labels have {values.size} rows but y_true has {positive.size}")
    table: dict[str, dict[str, Any]] = {}
    for value in sorted(set(values.tolist())):
        mask = values == value
        counts = _counts(positive[mask], alert[mask])
        low, high = wilson_interval(counts["tp"], counts["positives"]) if counts["positives"] else (None, None)
        table[value] = {
            "recall_ci_low": _clean(low),
            "recall_ci_high": _clean(high),
            "judgeable": counts["positives"] >= MIN_GROUP_POSITIVES,
            "n": counts["n"],
            "positives": counts["positives"],
            "alerts": counts["alerts"],
            "recall": counts["recall"],
            "precision": counts["precision"],
            "false_negative_rate": counts["false_negative_rate"],
        }
    return table


def _label(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "unknown"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _clean(value: object) -> float | None:
    """A plain float, or None for None/NaN/inf (JSON has no NaN)."""
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None


def bootstrap_intervals(
    y_true: np.ndarray, y_score: np.ndarray, threshold: float, *, resamples: int = 1000, seed: int = 0
) -> dict[str, list[float] | None]:
    """95 % percentile-bootstrap intervals of recall, precision and ROC-AUC (rows resampled).

    Returns:
        ``{"recall": [low, high], "precision": [...], "roc_auc": [...]}``; None where a
        figure is undefined in too many resamples.
    """
    y = np.asarray(y_true, dtype=np.float64).ravel()
    s = np.asarray(y_score, dtype=np.float64).ravel()
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {"recall": [], "precision": [], "roc_auc": []}
    for _ in range(resamples):
        pick = rng.integers(0, y.size, y.size)
        yy, ss = y[pick] == 1.0, s[pick]
        alert = ss >= threshold
        positives = int(yy.sum())
        if positives:
            draws["recall"].append(float((alert & yy).sum() / positives))
        if alert.any():
            draws["precision"].append(float((alert & yy).sum() / alert.sum()))
        if 0 < positives < y.size:
            draws["roc_auc"].append(float(roc_auc_score(yy, ss)))
    return {
        name: ([float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975))] if len(v) >= resamples // 2 else None)
        for name, v in draws.items()
    }
