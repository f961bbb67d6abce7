"""From raw score to probability (Platt scaling whose slope is always positive) and the reliability table.

Why Platt with smoothed targets and not isotonic, and why the slope may come from within each
year: ``docs/modeling.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from modeling.bundle import Calibrator
from passos.errors import PassosError

RELIABILITY_BINS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class CalibrationError(PassosError, ValueError):
    """No increasing map from raw score to probability fits: the score does not rank within a year."""


def fit_calibrator(score: np.ndarray, y: np.ndarray, *, groups: np.ndarray | None = None) -> Calibrator:
    """A strictly increasing logistic map from raw score to probability (slope > 0 or an error).

    :func:`fit_calibration` with its explanation dropped.
    """
    return fit_calibration(score, y, groups=groups)[0]


def fit_calibration(score: np.ndarray, y: np.ndarray, *, groups: np.ndarray | None = None) -> tuple[Calibrator, str]:
    """A strictly increasing logistic map from raw score to probability, and how it was fitted.

    1. Platt scaling on all rows together. When its slope is positive, that is the map: it
       keeps the ranking and, fitted across years, it is the most honest about a new year.
    2. Otherwise (rows pooled from years whose base rates differ can give a negative slope
       although the score ranks the rows within every year: Simpson's paradox) the slope is
       fitted **within** the groups (the rows' years): one intercept per group and one shared
       slope. The served intercept is then refitted on all rows with that slope fixed.
    3. When that slope is not positive either, the score does not rank the classes within a
       year and :class:`CalibrationError` says so: no increasing map exists.

    Platt (1999) targets: positives count as ``(N+ + 1) / (N+ + 2)`` and negatives as
    ``1 / (N- + 2)`` instead of 1 and 0. On scores that separate the classes the plain fit has
    no finite slope and calls every row certain; the prior keeps the slope finite, so the
    probabilities stay below 1 by about one row's worth of evidence.

    Args:
        score: raw scores, shape (n,).
        y: labels 0/1, shape (n,).
        groups: the group (year) of each row; None fits step 2 with a single intercept.

    Returns:
        The calibrator and one sentence on which step fitted it (for the model card).

    Raises:
        ValueError: ``y`` holds a single class, or the lengths differ.
        CalibrationError: no positive slope fits, neither pooled nor within the groups.
    """
    score = np.asarray(score, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if score.shape != y.shape:
        raise ValueError(f"score has {score.size} rows but y has {y.size}")
    labels_of = np.zeros(score.size, dtype=np.int64)
    names: list[str] = ["all rows"]
    if groups is not None:
        group_values = np.asarray(groups).ravel()
        if group_values.shape != score.shape:
            raise ValueError(f"score has {score.size} rows but groups has {group_values.size}")
        uniques, labels_of = np.unique(group_values.astype(str), return_inverse=True)
        names = [str(u) for u in uniques]
    positives, negatives = float(y.sum()), float((1.0 - y).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("calibration needs both classes")
    hi, lo = (positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0)
    target = np.where(y == 1.0, hi, lo)
    pooled = _logistic(score.reshape(-1, 1), target, intercept=True)
    if np.isfinite(pooled[0]) and pooled[0] > 0.0:
        return Calibrator("platt", a=pooled[0], b=pooled[1]), "platt on all rows pooled (slope > 0)"
    design = np.column_stack([score, np.eye(len(names))[labels_of]])
    a = _logistic(design, target, intercept=False)[0]
    if not (np.isfinite(a) and a > 0.0):
        raise CalibrationError(
            f"no increasing calibration exists: the slope is {pooled[0]:.4g} on all rows pooled and {a:.4g} "
            f"within the groups {', '.join(names)}; the raw score does not rank the {int(positives)} positives "
            f"above the {int(negatives)} negatives, so this candidate cannot be calibrated"
        )
    how = (
        f"platt with the slope fitted within the groups {', '.join(names)} (the pooled slope {pooled[0]:.3g} "
        "was not positive), intercept refitted on all rows"
    )
    return Calibrator("platt", a=a, b=_intercept(a * score, target)), how


def _logistic(design: np.ndarray, target: np.ndarray, *, intercept: bool) -> tuple[float, float]:
    """Slope of the first column (and the intercept, 0.0 without one) of a logistic fit on soft targets."""
    # Soft targets as two weighted copies of every row.
    x = np.concatenate([design, design])
    labels = np.concatenate([np.ones_like(target), np.zeros_like(target)])
    weights = np.concatenate([target, 1.0 - target])
    fitted = LogisticRegression(C=1e6, max_iter=1000, fit_intercept=intercept).fit(x, labels, sample_weight=weights)
    return float(fitted.coef_[0, 0]), float(fitted.intercept_[0]) if intercept else 0.0


def _intercept(offset: np.ndarray, target: np.ndarray) -> float:
    """The intercept ``b`` minimising the log-loss of ``sigmoid(offset + b)`` against soft targets (Newton)."""
    mean = float(target.mean())
    b = float(np.log(mean / (1.0 - mean)) - np.median(offset))
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(offset + b)))
        gradient, curvature = float((p - target).sum()), float((p * (1.0 - p)).sum())
        if curvature <= 0.0:
            break
        step = gradient / curvature
        b -= float(np.clip(step, -5.0, 5.0))
        if abs(step) < 1e-10:
            break
    return b


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
