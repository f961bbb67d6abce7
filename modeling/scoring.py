"""Scoring with a champion: each row by the richest validated variant its known fields allow.

One definition for the API and batch scoring: a row no served variant can take gets no score
(``risk_label`` "unknown"), never a guess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from features.featuresets import encode_frame


@dataclass
class Scored:
    """Per row: the score (NaN when unknown), the variant that answered (None), reasons, percentile,
    and which features were known."""

    scores: np.ndarray
    routes: list[Any]
    reasons: list[list[dict[str, Any]]]
    percentiles: np.ndarray
    known: np.ndarray

    def labels(self) -> list[str]:
        """``high``/``low`` at the answering variant's threshold, ``unknown`` without one."""
        return [
            "unknown" if route is None else ("high" if score >= route.threshold else "low")
            for score, route in zip(self.scores.tolist(), self.routes, strict=True)
        ]


def score_rows(model: Any, matrix: np.ndarray, *, reasons: bool = True, top: int = 3) -> Scored:
    """Score an encoded matrix with a champion and its variants (``ModelBundle.route`` per row)."""
    names = list(model.feature_names)
    known_mask = ~np.isnan(matrix)
    routes = [model.route({n for n, present in zip(names, row, strict=True) if present}) for row in known_mask]
    n = matrix.shape[0]
    scores = np.full(n, np.nan)
    percentiles = np.full(n, np.nan)
    why: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    for bundle in [model, *getattr(model, "variants", [])]:
        rows = [i for i, route in enumerate(routes) if route is bundle]
        if not rows:
            continue
        if reasons:
            part, part_why = bundle.explain(matrix[rows], top=top)
            for i, row_why in zip(rows, part_why, strict=True):
                why[i] = row_why
        else:
            part = bundle.predict_proba(matrix[rows])
        scores[rows] = part
        percentiles[rows] = bundle.percentile(part)
    return Scored(scores, routes, why, percentiles, known_mask)


def score_frame(model: Any, version: str, frame: pd.DataFrame, *, task: str, top: int = 3) -> pd.DataFrame:
    """Score every row of ``frame`` (a ``features_<task>`` view slice), ranked by risk.

    Returns:
        Columns ``ra, year, task, model_version, risk_score, risk_label, rank, reasons, scored_at``
        (the ``risk_scores`` table), highest risk first; ``reasons`` is a JSON list. A row no
        served variant can take has a null ``risk_score`` and ``risk_label`` "unknown", ranked last.
    """
    matrix = encode_frame(frame, task)
    scored = (
        score_rows(model, matrix, top=top)
        if len(frame)
        else Scored(np.empty(0), [], [], np.empty(0), np.empty((0, 0), dtype=bool))
    )
    out = pd.DataFrame(
        {
            "ra": frame["ra"].astype(str).to_numpy(),
            "year": frame["year"].astype(int).to_numpy(),
            "task": task,
            "model_version": version,
            "risk_score": scored.scores.astype(float),
            "risk_label": scored.labels(),
            "reasons": [json.dumps(r, ensure_ascii=False) for r in scored.reasons],
            "scored_at": datetime.now(UTC).replace(tzinfo=None),
        }
    )
    out = out.sort_values(["risk_score", "ra"], ascending=[False, True], kind="stable", na_position="last")
    out = out.reset_index(drop=True)
    out.insert(6, "rank", np.arange(1, len(out) + 1))
    return out
