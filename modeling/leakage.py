"""The leakage audit: the policy's forbidden columns, and any feature too strong to be honest."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.featuresets import check_policy, feature_names, feature_specs
from passos.errors import LeakageError

logger = logging.getLogger(__name__)


def feature_aucs(frame: pd.DataFrame, task: str, *, columns: Sequence[str] | None = None) -> dict[str, float | None]:
    """Single-feature ROC-AUC of each column against the target, on the frame's labelled rows.

    ``max(auc, 1 - auc)``, rows where the column is missing ignored. Categorical columns (the
    task's categoricals, or non-numeric columns) are scored by their target rate per category.
    None when the column is absent or its known rows hold a single class.
    """
    labelled = frame.loc[frame["target"].notna()]
    y = labelled["target"].to_numpy(dtype=np.float64)
    kinds = {spec.name: spec.kind for spec in feature_specs(task)}
    out: dict[str, float | None] = {}
    for name in columns if columns is not None else feature_names(task):
        if name not in labelled:
            out[name] = None
            continue
        series = labelled[name]
        categorical = kinds.get(name) == "categorical" or not pd.api.types.is_numeric_dtype(series)
        known = series.notna().to_numpy()
        if categorical:
            rates = pd.Series(y[known]).groupby(series[known].astype(str).to_numpy()).transform("mean")
            score = rates.to_numpy(dtype=np.float64)
        else:
            score = series[known].to_numpy(dtype=np.float64)
        target = y[known]
        if target.size == 0 or target.min() == target.max():
            out[name] = None
            continue
        auc = float(roc_auc_score(target, score))
        out[name] = max(auc, 1.0 - auc)
    return out


def audit_leakage(
    frame: pd.DataFrame, task: str, *, max_auc: float, columns: Sequence[str] | None = None
) -> list[tuple[str, float]]:
    """The columns whose single-feature AUC exceeds ``max_auc``, highest first.

    Args:
        frame: the training rows (``target`` plus the columns); unlabelled rows are ignored.
        task: the task whose feature kinds apply.
        max_auc: a feature alone separating the target better than this is a suspected leak.
        columns: the columns to check; default the task's features.
    """
    aucs = feature_aucs(frame, task, columns=columns)
    flagged = [(name, auc) for name, auc in aucs.items() if auc is not None and auc > max_auc]
    return sorted(flagged, key=lambda item: -item[1])


def assert_no_leakage(
    frame: pd.DataFrame, task: str, *, max_auc: float, columns: Sequence[str] | None = None
) -> dict[str, float | None]:
    """Enforce the leakage policy and the single-feature AUC audit.

    Returns:
        Every checked column's single-feature AUC (for the model card).

    Raises:
        LeakageError: a column is forbidden for the task (``check_policy``), or separates the
            target alone with an AUC above ``max_auc``; the message names each column and AUC.
    """
    names = list(columns) if columns is not None else feature_names(task)
    check_policy(task, names)
    aucs = feature_aucs(frame, task, columns=names)
    flagged = [(name, auc) for name, auc in aucs.items() if auc is not None and auc > max_auc]
    if flagged:
        listed = ", ".join(f"{name} (AUC {auc:.3f})" for name, auc in sorted(flagged, key=lambda i: -i[1]))
        raise LeakageError(
            f"task {task!r}: {listed} alone separate(s) the target above the audit limit {max_auc:.2f}; "
            "a feature this strong is almost surely derived from the target"
        )
    return aucs


def combination_warnings(oof_aucs: Mapping[str, Any], max_auc: float) -> list[str]:
    """Warn when a model separates the training rows better than any honest feature may.

    The single-feature audit cannot see a target that is a function of several features
    together (``fase ideal`` follows from age, so ``idade`` with ``fase`` recomputes the setback).
    ``oof_aucs`` maps each candidate to its out-of-fold ROC-AUC. An out-of-fold ROC-AUC above the audit limit is the symptom; it is recorded, not raised,
    because whether such a task is worth a model is a product decision.
    """
    notes = []
    for kind, auc in oof_aucs.items():
        if auc is not None and auc > max_auc:
            notes.append(
                f"{kind}: out-of-fold ROC-AUC {auc:.3f} on the training years exceeds the audit limit "
                f"{max_auc:.2f}; the features together may recompute the target"
            )
    for note in notes:
        logger.warning("possible leakage by combination: %s", note)
    return notes
