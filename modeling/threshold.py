"""The alert threshold: the recall it aims at, and where in the safe gap it sits.

The reasoning (a Wilson margin on recall, a cut in the middle of the gap that adds no false
alarm) is in ``docs/modeling.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

# Confidence that the validation recall at the threshold is not below the target by chance
# (one-sided Wilson bound); 0.5 aims at the target itself.
RECALL_CONFIDENCE = 0.95
# A safe gap wider than this many log-odds means the validation scores separate the classes
# almost perfectly: the target may be a rule the features recompute (docs/modeling.md).
WIDE_GAP_LOGIT = 2.0


@dataclass(frozen=True)
class Threshold:
    """A chosen cut on a score and the gap it was chosen in.

    Attributes:
        cut: alert when ``score >= cut``.
        highest: the highest cut reaching the operating recall (the edge of the positives).
        lowest: the lowest cut that adds no validation false alarm below ``highest``
            (just above the highest-scored negative under ``highest``).
        gap_logit: width of ``[lowest, highest]`` in log-odds (0 when the cut sits on a row).
        recall: the validation recall at ``cut``.
        false_alarms: validation negatives at or above ``cut``.
    """

    cut: float
    highest: float
    lowest: float
    gap_logit: float
    recall: float
    false_alarms: int

    @property
    def wide(self) -> bool:
        """True when the gap is so wide the classes look separable (see ``WIDE_GAP_LOGIT``)."""
        return self.gap_logit > WIDE_GAP_LOGIT


def recall_lower_bound(hits: int, positives: int, confidence: float) -> float:
    """One-sided Wilson score lower bound of a recall of ``hits`` out of ``positives``.

    Raises:
        ValueError: ``positives`` < 1, ``hits`` outside ``[0, positives]`` or ``confidence``
            outside ``[0.5, 1)``.
    """
    if positives < 1 or not 0 <= hits <= positives:
        raise ValueError(f"need 0 <= hits <= positives and positives >= 1, got {hits} of {positives}")
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be within [0.5, 1), got {confidence!r}")
    return wilson_interval(hits, positives, z=NormalDist().inv_cdf(confidence))[0]


def wilson_interval(hits: int, n: int, *, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``hits / n`` (two-sided 95 % by default)."""
    if n < 1:
        return (0.0, 1.0)
    p = hits / n
    centre = p + z * z / (2 * n)
    spread = z * float(np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)))
    denominator = 1 + z * z / n
    return (float(max(0.0, (centre - spread) / denominator)), float(min(1.0, (centre + spread) / denominator)))


def operating_recall(positives: int, recall_target: float, confidence: float = RECALL_CONFIDENCE) -> float:
    """The smallest recall ``k / positives`` whose :func:`recall_lower_bound` reaches ``recall_target``.

    It depends only on the number of validation positives, so every candidate validated on the
    same rows aims at the same recall; 1.0 when even finding every positive cannot certify it.

    Raises:
        ValueError: ``positives`` < 1, ``recall_target`` outside [0, 1] or a bad ``confidence``.
    """
    if not 0.0 <= recall_target <= 1.0:
        raise ValueError(f"recall_target must be within [0, 1], got {recall_target!r}")
    if positives < 1:
        raise ValueError("cannot set an operating recall without positive rows")
    first = max(0, int(np.floor(recall_target * positives - 1e-9)))
    for hits in range(first, positives + 1):
        if recall_lower_bound(hits, positives, confidence) >= recall_target - 1e-12:
            return hits / positives
    return 1.0


def precision_at_recall(y: np.ndarray, score: np.ndarray, recall: float) -> float | None:
    """Precision at exactly ``recall`` on the precision-recall curve of ``score``, interpolated.

    Within a block of tied scores alerts are taken in random order, so true and false positives
    grow in proportion (Davis & Goadrich, 2006). None when ``y`` has no positive row.

    Raises:
        ValueError: ``recall`` outside (0, 1] or ``y`` and ``score`` of different lengths.
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    score = np.asarray(score, dtype=np.float64).ravel()
    if y.shape != score.shape:
        raise ValueError(f"y has {y.size} rows but score has {score.size}")
    if not 0.0 < recall <= 1.0:
        raise ValueError(f"recall must be within (0, 1], got {recall!r}")
    positives = float(y.sum())
    if positives == 0:
        return None
    cuts, inverse = np.unique(-score, return_inverse=True)
    tp = np.cumsum(np.bincount(inverse, weights=y, minlength=cuts.size))
    fp = np.cumsum(np.bincount(inverse, weights=1.0 - y, minlength=cuts.size))
    wanted = recall * positives
    i = int(np.searchsorted(tp, wanted - 1e-9, side="left"))
    tp_before = tp[i - 1] if i else 0.0
    fp_before = fp[i - 1] if i else 0.0
    share = (wanted - tp_before) / (tp[i] - tp_before)
    false_alarms = fp_before + share * (fp[i] - fp_before)
    return float(wanted / (wanted + false_alarms))


def highest_cut(y: np.ndarray, proba: np.ndarray, recall_target: float) -> float:
    """The highest cut ``t`` on ``proba`` such that ``recall(proba >= t) >= recall_target``.

    Raises:
        ValueError: ``y`` has no positive row.
    """
    y = np.asarray(y, dtype=np.float64)
    proba = np.asarray(proba, dtype=np.float64)
    positives = np.sort(proba[y == 1.0])
    if positives.size == 0:
        raise ValueError("cannot choose a threshold without positive rows")
    cuts = np.unique(proba)
    recall = (positives.size - np.searchsorted(positives, cuts, side="left")) / positives.size
    return float(cuts[recall >= recall_target - 1e-12].max())


def choose_threshold(y: np.ndarray, proba: np.ndarray, recall_target: float) -> Threshold:
    """A cut that reaches ``recall_target`` on the validation rows, with a margin.

    Every cut between the highest one that reaches the recall and the highest-scored negative
    below it flags the same validation negatives, so all of them cost the same false alarms on
    these rows; the one in the middle (in log-odds) leaves the most room on both sides for a
    new year whose scores move a little. On overlapping scores the gap is narrow and the cut
    stays near the edge; on separable scores it is wide, which is itself recorded as a warning.

    Raises:
        ValueError: ``y`` has no positive row.
    """
    y = np.asarray(y, dtype=np.float64)
    proba = np.asarray(proba, dtype=np.float64)
    top = highest_cut(y, proba, recall_target)
    negatives_below = proba[(y == 0.0) & (proba < top)]
    positives = proba[y == 1.0]
    if negatives_below.size:
        floor = float(negatives_below.max())
        # The cut must stay strictly above that negative: the midpoint in log-odds does.
        cut = _from_logit((_logit(floor) + _logit(top)) / 2.0)
        cut = float(min(max(cut, np.nextafter(floor, 1.0)), top))
        lowest = float(np.nextafter(floor, 1.0))
    else:
        lowest = float(proba.min()) if proba.size else top
        cut = _from_logit((_logit(lowest) + _logit(top)) / 2.0) if lowest < top else top
        cut = float(min(max(cut, lowest), top))
    return Threshold(
        cut=cut,
        highest=top,
        lowest=lowest,
        gap_logit=float(_logit(top) - _logit(lowest)),
        recall=float(np.mean(positives >= cut)),
        false_alarms=int(np.sum((y == 0.0) & (proba >= cut))),
    )


def _logit(p: float) -> float:
    p = float(np.clip(p, 1e-12, 1.0 - 1e-12))
    return float(np.log(p / (1.0 - p)))


def _from_logit(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))
