"""An operating point per segment: students behind now, and students on track now.

A single threshold is set for a population dominated by students already behind, whom the
sheet already names; the early warning exists for the on-track students who will fall behind.
:func:`fit_segment_thresholds` chooses a cut for the on-track students on training-side
out-of-fold scores only (never the test year), stored with the model;
:func:`segment_threshold` is the pure function a scorer calls per row. The reasoning and the
measured effect are in ``docs/modeling.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from modeling.threshold import RECALL_CONFIDENCE, choose_threshold, operating_recall

BEHIND_NOW, ON_TRACK_NOW = "behind now", "on track now"
# The on-track recall the segment's cut aims at, out of fold (with the usual Wilson margin).
ON_TRACK_RECALL_TARGET = 0.80


def segment_of(defasagem: Any) -> str | None:
    """``"behind now"`` for a negative ``defasagem``, ``"on track now"`` otherwise, None when unknown."""
    try:
        value = float(defasagem)
    except (TypeError, ValueError):
        return None
    if math.isnan(value):
        return None
    return BEHIND_NOW if value < 0 else ON_TRACK_NOW


def fit_segment_thresholds(
    y: np.ndarray,
    proba: np.ndarray,
    defasagem: np.ndarray,
    *,
    threshold: float,
    on_track_recall: float = ON_TRACK_RECALL_TARGET,
    recall_confidence: float = RECALL_CONFIDENCE,
) -> dict[str, dict[str, Any]]:
    """Each segment's cut on out-of-fold calibrated scores.

    Students behind now keep the model's own ``threshold``. For students on track now the cut
    is :func:`modeling.threshold.choose_threshold` on their rows alone, aiming at the smallest
    recall whose Wilson lower bound reaches ``on_track_recall``. Without on-track positives the
    segment keeps ``threshold``.

    Returns:
        ``{segment: {"threshold", "n", "positives", "oof_recall", "oof_precision", "oof_flag_share",
        "aim"}}``.
    """
    y = np.asarray(y, dtype=np.float64)
    proba = np.asarray(proba, dtype=np.float64)
    segments = np.array([segment_of(v) for v in np.asarray(defasagem, dtype=object)], dtype=object)
    out: dict[str, dict[str, Any]] = {}
    for name in (BEHIND_NOW, ON_TRACK_NOW):
        rows = segments == name
        ys, ps = y[rows], proba[rows]
        positives = int(ys.sum())
        cut, aim = float(threshold), None
        if name == ON_TRACK_NOW and positives:
            aim = operating_recall(positives, on_track_recall, recall_confidence)
            cut = choose_threshold(ys, ps, aim).cut
        flagged = ps >= cut
        out[name] = {
            "threshold": cut,
            "aim": aim,
            "n": int(rows.sum()),
            "positives": positives,
            "oof_recall": float((flagged & (ys == 1)).sum() / positives) if positives else None,
            "oof_precision": float((flagged & (ys == 1)).sum() / flagged.sum()) if flagged.any() else None,
            "oof_flag_share": float(flagged.mean()) if flagged.size else None,
        }
    return out


def segment_threshold(bundle: Any, row_features: Mapping[str, Any]) -> tuple[str | None, float]:
    """The segment of a row and the cut that applies to it.

    Args:
        bundle: a model bundle; its ``metadata["segment_thresholds"]`` (from training) holds the
            cuts. Without them, or for a row whose ``defasagem`` is unknown, the bundle's own
            ``threshold`` applies.
        row_features: the row's fields by name (``defasagem`` decides the segment).

    Returns:
        ``(segment or None, threshold)``.
    """
    segment = segment_of(row_features.get("defasagem"))
    cuts = (getattr(bundle, "metadata", None) or {}).get("segment_thresholds") or {}
    if segment is None or segment not in cuts:
        return segment, float(bundle.threshold)
    return segment, float(cuts[segment]["threshold"])
