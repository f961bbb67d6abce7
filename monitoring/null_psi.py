"""PSI on bins cut on the reference, and what an unchanged year's PSI looks like: the drift thresholds.

A column's alarm threshold is calibrated on resampled "unchanged" years drawn from the
champion's own training years (:func:`null_psi`), family-wise over the monitored columns
(:func:`alarm_thresholds`), so that a stable year raises a false alarm at the set rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from monitoring.psi import EPSILON

BINS = 10


@dataclass
class _Binner:
    """Bins of one column, cut on a reference: deciles (numeric) or categories, plus a missing bin."""

    edges: np.ndarray | None  # numeric: inner edges; None for categorical
    categories: tuple[str, ...] = ()

    @classmethod
    def fit(cls, values: pd.Series, numeric: bool) -> _Binner:
        if numeric:
            finite = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
            finite = finite[np.isfinite(finite)]
            if finite.size == 0:
                return cls(np.array([], dtype=float))
            quantiles = np.quantile(finite, np.linspace(0.0, 1.0, BINS + 1)[1:-1])
            return cls(np.unique(quantiles))
        seen = sorted({str(v) for v in values if not pd.isna(v)})
        return cls(None, tuple(seen))

    @property
    def size(self) -> int:
        # numeric: len(edges)+1 value bins; categorical: one per category plus "other"; then missing
        return (self.edges.size + 1 if self.edges is not None else len(self.categories) + 1) + 1

    def codes(self, values: pd.Series) -> np.ndarray:
        missing_bin = self.size - 1
        if self.edges is not None:
            array = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
            out = np.searchsorted(self.edges, np.nan_to_num(array, nan=0.0), side="left")
            out[~np.isfinite(array)] = missing_bin
            return out.astype(np.int64)
        index = {c: i for i, c in enumerate(self.categories)}
        other = len(self.categories)
        return np.array(
            [missing_bin if pd.isna(v) else index.get(str(v), other) for v in values.astype(object)], dtype=np.int64
        )


def _shares(codes: np.ndarray, size: int) -> np.ndarray:
    """Bin shares of each row of ``codes`` (rows = samples), floored at EPSILON."""
    codes = np.atleast_2d(codes)
    rows, n = codes.shape
    offset = codes + size * np.arange(rows)[:, None]
    counts = np.bincount(offset.ravel(), minlength=size * rows).reshape(rows, size)
    return np.maximum(counts / max(n, 1), EPSILON)


def _psi(current: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.sum((current - reference) * np.log(current / reference), axis=-1)


def psi_columns(reference: pd.DataFrame, current: pd.DataFrame, columns: list[tuple[str, bool]]) -> np.ndarray:
    """PSI of every column, ``current`` against ``reference``, on bins cut on ``reference``."""
    values = []
    for name, numeric in columns:
        binner = _Binner.fit(reference[name], numeric)
        ref = _shares(binner.codes(reference[name]), binner.size)[0]
        cur = _shares(binner.codes(current[name]), binner.size)[0]
        values.append(float(_psi(cur, ref)))
    return np.array(values)


def null_psi(
    reference: pd.DataFrame, columns: list[tuple[str, bool]], n: int, *, resamples: int, seed: int, pooled: bool
) -> tuple[np.ndarray, str]:
    """PSI of each column for resampled "unchanged" years of ``n`` rows: (resamples x columns), method.

    Each resample draws ``n`` rows from one training year. ``pooled=False`` compares it with the
    other training years (a year the pool has not seen: the year-to-year variation);
    ``pooled=True`` with every training year, on the very bins the real check uses.
    """
    rng = np.random.default_rng(seed + int(pooled))
    years = sorted(int(y) for y in reference["year"].dropna().unique()) if "year" in reference else []
    pairs: list[tuple[pd.DataFrame, pd.DataFrame]]
    if len(years) >= 2:
        pairs = [
            (reference if pooled else reference.loc[reference["year"] != y], reference.loc[reference["year"] == y])
            for y in years
        ]
        method = f"resampled years {', '.join(map(str, years))}, each against the others and against all"
    else:
        pairs = [(reference, reference)]
        method = "bootstrap of the single reference year"
    per_pair = [resamples // len(pairs) + (i < resamples % len(pairs)) for i in range(len(pairs))]
    blocks = []
    for (base, sample), draws in zip(pairs, per_pair, strict=True):
        block = np.empty((draws, len(columns)))
        picks = rng.integers(0, len(sample), size=(draws, n))
        for j, (name, numeric) in enumerate(columns):
            binner = _Binner.fit(base[name], numeric)
            ref = _shares(binner.codes(base[name]), binner.size)[0]
            sample_codes = binner.codes(sample[name])
            block[:, j] = _psi(_shares(sample_codes[picks], binner.size), ref)
        blocks.append(block)
    return np.vstack(blocks), method


def alarm_thresholds(
    null: np.ndarray, monitored: np.ndarray, alpha: float, alpha_watch: float
) -> tuple[np.ndarray, np.ndarray]:
    """Alarm and watch thresholds per column: family-wise over the monitored columns, and
    separately over the others (which only ever lead to ``watch``, at the alarm's rate)."""
    alarm = _calibrate(null, monitored, alpha)
    watch = _calibrate(null, monitored, alpha_watch)
    if (~monitored).any():
        others = _calibrate(null, ~monitored, alpha)
        alarm = np.where(monitored, alarm, others)
        watch = np.where(monitored, watch, others)
    return alarm, watch


def _calibrate(null: np.ndarray, monitored: np.ndarray, alpha: float) -> np.ndarray:
    """Per-column thresholds at one common quantile level, family-wise ``alpha`` over ``monitored``.

    Each resample's largest percentile rank over the monitored columns is its most extreme
    signal; the level is the ``1 - alpha`` quantile of those maxima.
    """
    draws = null.shape[0]
    ranks = (np.argsort(np.argsort(null, axis=0), axis=0) + 1) / draws
    chosen = np.asarray(monitored, dtype=bool)
    worst = ranks[:, chosen].max(axis=1) if chosen.any() else ranks.max(axis=1)
    level = float(np.quantile(worst, 1.0 - alpha, method="higher"))
    return np.quantile(null, level, axis=0, method="higher")
