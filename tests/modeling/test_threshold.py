"""The threshold: the recall it aims at (Wilson), and the middle of the gap that adds no false alarm."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from modeling.threshold import (
    WIDE_GAP_LOGIT,
    choose_threshold,
    highest_cut,
    operating_recall,
    precision_at_recall,
    recall_lower_bound,
    wilson_interval,
)


def test_wilson_bound_matches_the_formula_and_its_coverage() -> None:
    # statsmodels proportion_confint(90, 100, alpha=0.1, method="wilson") gives 0.83964 as lower end.
    assert recall_lower_bound(90, 100, 0.95) == pytest.approx(0.83964, abs=1e-5)
    assert recall_lower_bound(90, 100, 0.5) == pytest.approx(0.9)
    assert recall_lower_bound(0, 10, 0.95) == 0.0 and recall_lower_bound(10, 10, 0.95) < 1.0
    # Exact coverage: with a true recall of 0.90, how often does the bound claim >= 0.90?
    hits = np.arange(401)
    certified = np.array([recall_lower_bound(int(k), 400, 0.95) >= 0.9 for k in hits])
    assert binom.pmf(hits, 400, 0.9)[certified].sum() < 0.07  # ~5%, as a 95% bound should
    at_half = np.array([recall_lower_bound(int(k), 400, 0.5) >= 0.9 for k in hits])
    assert 0.4 < binom.pmf(hits, 400, 0.9)[at_half].sum() < 0.6  # aiming at the target: a coin flip
    for bad in ((11, 10, 0.95), (-1, 10, 0.95), (1, 0, 0.95), (5, 10, 1.0), (5, 10, 0.4)):
        with pytest.raises(ValueError):
            recall_lower_bound(*bad)


def test_operating_recall_is_the_smallest_certified_recall() -> None:
    for positives in (50, 366, 550, 2000):
        aim = operating_recall(positives, 0.9, 0.95)
        hits = round(aim * positives)
        assert recall_lower_bound(hits, positives, 0.95) >= 0.9 > recall_lower_bound(hits - 1, positives, 0.95)
        assert operating_recall(positives, 0.9, 0.5) == math.ceil(0.9 * positives) / positives
    assert 0.92 < operating_recall(550, 0.9) < 0.925  # the real validation years: ~2 points
    assert operating_recall(2000, 0.9) < operating_recall(366, 0.9)  # more rows, smaller margin
    assert operating_recall(10, 0.9) == 1.0  # cannot be certified: find every positive
    assert operating_recall(10, 0.0) == 0.0
    with pytest.raises(ValueError, match="positive"):
        operating_recall(0, 0.9)
    with pytest.raises(ValueError, match="recall_target"):
        operating_recall(10, 1.5)


def test_precision_at_recall_interpolates_between_cuts() -> None:
    y = np.array([1, 1, 0, 1, 0, 1, 0, 0], dtype=float)
    fine = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    assert precision_at_recall(y, fine, 0.5) == pytest.approx(1.0)  # the top two rows
    assert precision_at_recall(y, fine, 0.75) == pytest.approx(3 / 4)
    assert precision_at_recall(y, fine, 1.0) == pytest.approx(4 / 6)
    # A coarse score: one tied block of all rows. Taken in random order, true and false
    # positives grow together, so precision is the block's share of positives at any recall.
    assert precision_at_recall(y, np.zeros(8), 0.5) == pytest.approx(0.5)
    # Half-way into a block of 2 positives and 2 negatives after a clean top row.
    coarse = np.array([2.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    y2 = np.array([1, 1, 1, 0, 0, 1, 0, 0], dtype=float)
    # recall 0.5 = 2 of 4 positives: the top row plus half of the block's 2 positives and 2 negatives.
    assert precision_at_recall(y2, coarse, 0.5) == pytest.approx(2 / 3)
    assert precision_at_recall(np.zeros(3), np.arange(3.0), 0.9) is None
    with pytest.raises(ValueError, match="recall"):
        precision_at_recall(y, fine, 0.0)
    with pytest.raises(ValueError, match="rows"):
        precision_at_recall(y, fine[:3], 0.5)


def test_precision_at_recall_ranks_scores_the_same_at_any_base_rate() -> None:
    rng = np.random.default_rng(4)
    y = (rng.random(600) < 0.6).astype(float)
    good = y + rng.normal(0, 0.7, y.size)
    poor = y + rng.normal(0, 1.5, y.size)
    negatives = y == 0
    # The same students, with every negative counted three times (base rate 60% -> ~33%).
    y_low = np.concatenate([y, y[negatives], y[negatives]])
    at = {
        name: (
            precision_at_recall(y, s, 0.9),
            precision_at_recall(y_low, np.concatenate([s, s[negatives], s[negatives]]), 0.9),
        )
        for name, s in (("good", good), ("poor", poor))
    }
    assert at["good"][0] > at["poor"][0] and at["good"][1] > at["poor"][1]
    assert at["good"][1] < at["good"][0]  # precision itself does move with the base rate


def test_highest_cut_is_the_edge_of_the_positives() -> None:
    y = np.array([1, 1, 1, 1, 0, 0, 1, 0, 1, 1], dtype=float)
    proba = np.array([0.9, 0.8, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    assert highest_cut(y, proba, 0.5) == 0.7
    assert highest_cut(y, proba, 0.6) == 0.4
    assert highest_cut(y, proba, 1.0) == 0.1
    with pytest.raises(ValueError, match="positive"):
        highest_cut(np.zeros(3), proba[:3], 0.9)


def test_the_cut_sits_in_the_middle_of_the_gap_that_adds_no_false_alarm() -> None:
    """A cut on the lowest positive needed would be a cliff; the margin moves it down the gap."""
    y = np.array([1, 1, 1, 1, 0, 1, 0, 0], dtype=float)
    proba = np.array([0.95, 0.9, 0.8, 0.6, 0.2, 0.15, 0.1, 0.05])
    threshold = choose_threshold(y, proba, 0.8)  # 4 of 5 positives: edge at 0.6, next negative 0.2
    assert threshold.highest == 0.6
    assert threshold.lowest == pytest.approx(0.2)
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    assert logit(threshold.cut) == pytest.approx((logit(0.2) + logit(0.6)) / 2)
    assert 0.2 < threshold.cut < 0.6
    assert threshold.recall == 0.8 and threshold.false_alarms == 0  # same validation outcome as the edge
    assert threshold.gap_logit == pytest.approx(logit(0.6) - logit(0.2)) and not threshold.wide


def test_a_gap_on_separable_scores_is_wide_and_said_so() -> None:
    y = np.repeat([0.0, 1.0], 50)
    proba = np.where(y == 1, 0.99, 0.01)
    threshold = choose_threshold(y, proba, 0.9)
    assert threshold.wide and threshold.gap_logit > WIDE_GAP_LOGIT
    assert threshold.false_alarms == 0 and threshold.recall == 1.0
    assert 0.4 < threshold.cut < 0.6


def test_overlapping_scores_leave_the_cut_at_the_edge() -> None:
    y = np.array([1, 0, 1, 0, 1, 0], dtype=float)
    proba = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    threshold = choose_threshold(y, proba, 1.0)
    assert threshold.highest == 0.5 and threshold.lowest == pytest.approx(0.4, abs=1e-9)
    assert threshold.recall == 1.0 and threshold.false_alarms == 2
    # No negative below the edge: the gap runs to the lowest score.
    only = choose_threshold(np.array([0.0, 1.0, 1.0]), np.array([0.9, 0.5, 0.3]), 1.0)
    assert only.cut == 0.3 and only.false_alarms == 1


def test_a_negative_scored_exactly_at_the_cut_is_a_false_alarm() -> None:
    """Tied scores (a rule's, or a small tree's) put negatives on the cut: ``score >= cut`` flags them."""
    y = np.array([1, 0, 1, 0, 0], dtype=float)
    proba = np.array([0.7, 0.7, 0.4, 0.4, 0.4])  # every row tied with a positive
    threshold = choose_threshold(y, proba, 1.0)
    assert threshold.cut == 0.4 and threshold.recall == 1.0
    assert threshold.false_alarms == int(np.sum((y == 0) & (proba >= threshold.cut))) == 3


def test_wilson_interval_two_sided() -> None:
    low, high = wilson_interval(45, 50)
    assert 0.78 < low < 0.79 and 0.95 < high < 0.96  # statsmodels: (0.7864, 0.9565)
    assert wilson_interval(0, 0) == (0.0, 1.0)
