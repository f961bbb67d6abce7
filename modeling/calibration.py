"""From raw score to probability (Platt scaling with Platt's own prior) and the reliability table.

Why Platt with smoothed targets and not isotonic: ``docs/modeling.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from modeling.bundle import Calibrator

RELIABILITY_BINS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def fit_calibrator(score: np.ndarray, y: np.ndarray) -> Calibrator:
    """A strictly increasing logistic map from raw score to probability.

    Platt (1999) targets: positives count as ``(N+ + 1) / (N+ + 2)`` and negatives as
    ``1 / (N- + 2)`` instead of 1 and 0. On scores that separate the classes the plain fit has
    no finite slope and calls every row certain; the prior keeps the slope finite, so the
    probabilities stay below 1 by about one row's worth of evidence.

    Raises:
        ValueError: ``y`` holds a single class, or the lengths differ.
    """
    score = np.asarray(score, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if score.shape != y.shape:
        raise ValueError(f"score has {score.size} rows but y has {y.size}")
    positives, negatives = float(y.sum()), float((1.0 - y).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("calibration needs both classes")
    hi, lo = (positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0)
    target = np.where(y == 1.0, hi, lo)
    # Soft targets as two weighted copies of every row.
    x = np.concatenate([score, score]).reshape(-1, 1)
    labels = np.concatenate([np.ones_like(score), np.zeros_like(score)])
    weights = np.concatenate([target, 1.0 - target])
    fitted = LogisticRegression(C=1e6, max_iter=1000).fit(x, labels, sample_weight=weights)
    a, b = float(fitted.coef_[0, 0]), float(fitted.intercept_[0])
    return Calibrator("platt", a=a, b=b)


def reliability_table(
    y: np.ndarray, proba: np.ndarray, *, edges: tuple[float, ...] = RELIABILITY_BINS
) -> list[dict[str, Any]]:
    """Observed rate per bin of predicted probability: what a ``risk_score`` of 0.7 has meant.

    Returns:
        One dict per non-empty bin: ``low, high, n, mean_score, observed_rate, ci_low, ci_high``
        (a 95 % Wilson interval of the observed rate).
    """
    from modeling.threshold import wilson_interval

    y = np.asarray(y, dtype=np.float64).ravel()
    proba = np.asarray(proba, dtype=np.float64).ravel()
    rows = []
    bins = np.clip(np.searchsorted(np.asarray(edges[1:-1]), proba, side="right"), 0, len(edges) - 2)
    for i in range(len(edges) - 1):
        inside = bins == i
        n = int(inside.sum())
        if n == 0:
            continue
        hits = int(y[inside].sum())
        low, high = wilson_interval(hits, n)
        rows.append(
            {
                "low": edges[i],
                "high": edges[i + 1],
                "n": n,
                "mean_score": float(proba[inside].mean()),
                "observed_rate": hits / n,
                "ci_low": low,
                "ci_high": high,
            }
        )
    return rows
