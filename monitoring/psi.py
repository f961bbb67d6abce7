"""Population stability index (PSI) of a score distribution.

Reading the value (the usual credit-scoring convention):

* ``psi < 0.1``: no significant shift;
* ``0.1 <= psi < 0.2``: a moderate shift, worth watching;
* ``psi >= 0.2``: a significant shift (:data:`PSI_SIGNIFICANT`), the model's scores no longer
  look like those it was validated on.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.2
# Stands in for the share of an empty bin, so that ln(current / reference) stays finite.
EPSILON = 1e-4


def _finite(values: npt.ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    array = array[np.isfinite(array)]
    if array.size == 0:
        raise ValueError(f"psi: the {name} sample has no finite values")
    return array


def _shares(values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    # side="left" makes the bins right-closed, (q_i, q_i+1]: a value equal to an edge falls
    # in the lower bin, so a constant reference still leaves room above it for a shift.
    index = np.searchsorted(inner_edges, values, side="left")
    counts = np.bincount(index, minlength=inner_edges.size + 1)
    return np.maximum(counts / values.size, EPSILON)


def psi(reference: npt.ArrayLike, current: npt.ArrayLike, *, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference``.

    Bins are the ``bins`` quantiles of the reference (tied quantiles merge, so a discrete
    reference gives fewer bins), open at both ends so current values outside the reference's
    range still count. Non-finite values (NaN, inf) are dropped from both samples; empty bins
    get a share of :data:`EPSILON`.

    Args:
        reference: The scores the model was validated on.
        current: The scores to compare.
        bins: How many quantile bins to cut the reference into.

    Returns:
        ``sum((c - r) * ln(c / r))`` over the bins; 0 for identical distributions. Below 0.1 no
        significant shift, 0.1 to 0.2 moderate, above 0.2 significant.

    Raises:
        ValueError: ``bins`` is below 1, or a sample has no finite value.
    """
    if bins < 1:
        raise ValueError(f"psi: bins must be at least 1, got {bins}")
    ref = _finite(reference, "reference")
    cur = _finite(current, "current")
    quantiles = np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    inner_edges = np.unique(quantiles)
    ref_shares = _shares(ref, inner_edges)
    cur_shares = _shares(cur, inner_edges)
    return float(np.sum((cur_shares - ref_shares) * np.log(cur_shares / ref_shares)))
