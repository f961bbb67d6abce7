"""Unit tests of the population stability index."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitoring.psi import PSI_MODERATE, PSI_SIGNIFICANT, psi


@pytest.fixture
def scores() -> np.ndarray:
    return np.random.default_rng(7).beta(2, 5, size=1000)


def test_identical_is_zero(scores: np.ndarray) -> None:
    assert psi(scores, scores) == pytest.approx(0.0, abs=1e-12)


def test_same_distribution_is_small(scores: np.ndarray) -> None:
    other = np.random.default_rng(8).beta(2, 5, size=1000)
    assert psi(scores, other) < PSI_MODERATE


def test_shift_is_significant(scores: np.ndarray) -> None:
    shifted = np.random.default_rng(9).beta(5, 2, size=1000)
    assert psi(scores, shifted) > PSI_SIGNIFICANT


def test_grows_with_the_shift(scores: np.ndarray) -> None:
    assert psi(scores, scores + 0.02) < psi(scores, scores + 0.1) < psi(scores, scores + 0.3)


def test_known_value_two_bins() -> None:
    reference = np.array([0.0, 0.0, 1.0, 1.0])  # median edge at 0.5: shares 1/2, 1/2
    current = np.array([0.0, 1.0, 1.0, 1.0])  # shares 1/4, 3/4
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert psi(reference, current, bins=2) == pytest.approx(expected)


def test_nans_are_dropped(scores: np.ndarray) -> None:
    with_nans = np.concatenate([scores, [np.nan] * 50, [np.inf]])
    assert psi(with_nans, scores) == pytest.approx(0.0, abs=1e-12)


def test_empty_bins_stay_finite() -> None:
    reference = np.linspace(0, 1, 100)
    current = np.full(100, 0.99)  # every value in the top bin
    value = psi(reference, current)
    assert math.isfinite(value)
    assert value > PSI_SIGNIFICANT


def test_constant_reference_still_sees_a_shift_upwards() -> None:
    reference = np.full(200, 0.3)
    assert psi(reference, reference) == pytest.approx(0.0, abs=1e-12)
    assert psi(reference, np.full(200, 0.8)) > PSI_SIGNIFICANT


def test_values_outside_the_reference_range_count() -> None:
    reference = np.linspace(0.2, 0.4, 500)
    assert psi(reference, np.linspace(0.6, 0.9, 500)) > PSI_SIGNIFICANT


@pytest.mark.parametrize(("reference", "current"), [([np.nan], [0.1]), ([0.1], []), ([], [])])
def test_empty_sample_is_an_error(reference: list[float], current: list[float]) -> None:
    with pytest.raises(ValueError, match="no finite values"):
        psi(np.array(reference), np.array(current))


def test_bins_must_be_positive(scores: np.ndarray) -> None:
    with pytest.raises(ValueError, match="bins"):
        psi(scores, scores, bins=0)
