"""Batch scoring of a feature frame with a champion model: scores, labels, ranks and reasons."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from features.featuresets import encode_frame


def score_frame(model: Any, version: str, frame: pd.DataFrame, *, task: str, top: int = 3) -> pd.DataFrame:
    """Score every row of ``frame`` (a ``features_<task>`` view slice), ranked by risk.

    Returns:
        Columns ``ra, year, task, model_version, risk_score, risk_label, rank, reasons, scored_at``
        (the ``risk_scores`` table), highest risk first; ``reasons`` is a JSON list.
    """
    matrix = encode_frame(frame, task)
    if len(frame):
        scores, reasons = model.explain(matrix, top=top)
    else:
        scores, reasons = np.empty(0), []
    out = pd.DataFrame(
        {
            "ra": frame["ra"].astype(str).to_numpy(),
            "year": frame["year"].astype(int).to_numpy(),
            "task": task,
            "model_version": version,
            "risk_score": np.asarray(scores, dtype=float),
            "risk_label": np.where(np.asarray(scores) >= model.threshold, "high", "low"),
            "reasons": [json.dumps(r, ensure_ascii=False) for r in reasons],
            "scored_at": datetime.now(UTC).replace(tzinfo=None),
        }
    )
    out = out.sort_values(["risk_score", "ra"], ascending=[False, True], kind="stable").reset_index(drop=True)
    out.insert(6, "rank", np.arange(1, len(out) + 1))
    return out
