"""The one scoring core: every path that scores a student asks this module, and nothing else labels.

It defines, once, for a champion and its served variants (``ModelBundle.variants``):

* routing: each row goes to the richest servable variant whose required features it carries
  (:func:`route_rows`, vectorised; the same rule as ``ModelBundle.route``);
* "unknown": a row no servable variant can take gets no score, never a guess, and is told which
  request fields would let one answer (:func:`answer_rows`: ``needed``);
* the score (the answering variant's calibrated probability), the label at *that* variant's
  operating point for the row's segment (:func:`risk_label`, :func:`row_cuts`): students behind now
  (``defasagem < 0``) and students on track now each have the cut chosen for them in training
  (``modeling/segments.py``); a row whose ``defasagem`` is unknown, or a variant without per-segment
  cuts, gets the variant's single threshold, and its answer's ``segment`` is null;
* the percentile in the reference year and the reasons;
* the client contract of an answer: ``missing`` and ``needed`` name only fields a request can
  carry (a derived feature is reported as the fields it comes from), and an answer from a lesser
  variant carries ``upgrade``: the fields that would let the best variant answer, with its figures.

``/predict``, ``/predict/batch``, ``passos score`` (:func:`score_frame`, into ``risk_scores``,
which the ``at_risk`` and ``outcomes`` views read), ``passos batch-score`` (:func:`score_rows`)
and the served-path evaluation of the model card (``modeling/served.py``) all go through here.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from features.featuresets import DERIVED_FROM, encode_frame
from modeling.segments import BEHIND_NOW, ON_TRACK_NOW, segment_threshold

HIGH, LOW, UNKNOWN = "high", "low", "unknown"
# The segment an answer names (the keys of a bundle's ``segment_thresholds`` are the sheet's words).
SEGMENT_NAMES = {BEHIND_NOW: "behind", ON_TRACK_NOW: "on_track"}


def risk_label(score: float, threshold: float | None) -> str:
    """``high`` at or above the answering variant's threshold, ``low`` below it, ``unknown`` without one.

    The only place a label is computed: every path labels through this function.
    """
    if threshold is None or score != score:  # NaN: no variant answered
        return UNKNOWN
    return HIGH if score >= threshold else LOW


def family(model: Any) -> list[Any]:
    """The primary and its variants, richest first: the order in which routing tries them."""
    return sorted([model, *getattr(model, "variants", [])], key=lambda b: -len(b.used or b.feature_names))


def route_rows(model: Any, known: np.ndarray) -> tuple[list[Any], np.ndarray]:
    """Which variant answers each row: the richest servable one whose required features are all known.

    Args:
        model: the champion (a ``ModelBundle`` with its served ``variants``).
        known: rows x the model's features, True where the value is known.

    Returns:
        The family (:func:`family`) and, per row, the index of the answering member in it
        (-1: none can answer, the row is "unknown").
    """
    members = family(model)
    position = {name: j for j, name in enumerate(model.feature_names)}
    chosen = np.full(known.shape[0], -1, dtype=np.int64)
    for k, bundle in enumerate(members):
        if not bundle.servable or any(name not in position for name in bundle.required):
            continue
        columns = [position[name] for name in bundle.required]
        carries = known[:, columns].all(axis=1) if columns else np.ones(known.shape[0], dtype=bool)
        chosen[(chosen < 0) & carries] = k
    return members, chosen


def row_cuts(
    routes: Sequence[Any], defasagem: np.ndarray, *, per_segment: bool = True
) -> tuple[list[float | None], list[str | None]]:
    """Per row, the cut that labels it and the segment whose operating point that cut is.

    Args:
        routes: the answering variant per row (None: unknown, no cut).
        defasagem: the row's own ``defasagem`` (NaN where unknown).
        per_segment: False applies every variant's single threshold (the figures "before").

    Returns:
        ``(cuts, segments)``: the cut (None for an unknown row) and ``"behind"``, ``"on_track"`` or
        None (the variant's single threshold applied: unknown ``defasagem``, or no per-segment cuts).
    """
    cuts: list[float | None] = []
    segments: list[str | None] = []
    for route, value in zip(routes, defasagem.tolist(), strict=True):
        if route is None:
            cuts.append(None)
            segments.append(None)
            continue
        stored = (route.metadata or {}).get("segment_thresholds") or {}
        segment, cut = segment_threshold(route, {"defasagem": value})
        applied = per_segment and segment in stored
        cuts.append(cut if applied else float(route.threshold))
        segments.append(SEGMENT_NAMES[segment] if applied and segment is not None else None)
    return cuts, segments


@dataclass
class Scored:
    """Per row: the score (NaN when unknown), the variant that answered (None), reasons, percentile,
    which features were known, and the cut that labels the row with the segment it belongs to."""

    scores: np.ndarray
    routes: list[Any]
    reasons: list[list[dict[str, Any]]]
    percentiles: np.ndarray
    known: np.ndarray
    cuts: list[float | None] = field(default_factory=list)
    segments: list[str | None] = field(default_factory=list)

    def labels(self) -> list[str]:
        """``high``/``low`` at the row's cut, ``unknown`` without one (:func:`risk_label`, :func:`row_cuts`)."""
        return [risk_label(score, cut) for score, cut in zip(self.scores.tolist(), self.cuts, strict=True)]

    def variants(self) -> list[str | None]:
        """The name of the variant that answered each row (None: unknown)."""
        return [None if route is None else route.variant for route in self.routes]


def score_rows(
    model: Any, matrix: np.ndarray, *, reasons: bool = True, top: int = 3, per_segment: bool = True
) -> Scored:
    """Score an encoded matrix (rows x the task's features): each row by the variant :func:`route_rows` picks.

    The row's label applies the answering variant's cut for the row's segment (:func:`row_cuts`,
    from the row's own ``defasagem`` when the task has it); ``per_segment=False`` applies the
    single threshold, for the figures that compare the two.
    """
    known = ~np.isnan(matrix)
    members, chosen = route_rows(model, known)
    n = matrix.shape[0]
    scores = np.full(n, np.nan)
    percentiles = np.full(n, np.nan)
    why: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    for k, bundle in enumerate(members):
        rows = np.flatnonzero(chosen == k)
        if not rows.size:
            continue
        if reasons:
            part, part_why = bundle.explain(matrix[rows], top=top)
            for i, row_why in zip(rows.tolist(), part_why, strict=True):
                why[i] = row_why
        else:
            part = bundle.predict_proba(matrix[rows])
        scores[rows] = part
        percentiles[rows] = bundle.percentile(part)
    routes = [None if k < 0 else members[k] for k in chosen.tolist()]
    names = list(model.feature_names)
    defasagem = matrix[:, names.index("defasagem")] if "defasagem" in names else np.full(n, np.nan)
    cuts, segments = row_cuts(routes, defasagem, per_segment=per_segment)
    return Scored(scores, routes, why, percentiles, known, cuts, segments)


def request_fields(features: Iterable[str], *, known: Collection[str] = (), sent: Collection[str] = ()) -> list[str]:
    """The request fields that would provide ``features``, in order, without those already known or sent.

    A derived feature (``idade_menos_fase``, ``idade_ref``, ``fase_esperada``, ``atraso_esperado``,
    ``folga_proximo_ano``, ``anos_no_programa``) is reported as the fields it comes from
    (``features.featuresets.DERIVED_FROM``); a known feature, or a source that is one, is not asked for.
    """
    out: dict[str, None] = {}
    for name in features:
        if name in known:
            continue
        for field_name in DERIVED_FROM.get(name, (name,)):
            if field_name not in known and field_name not in sent:
                out.setdefault(field_name, None)
    return list(out)


def _figures(bundle: Any) -> dict[str, Any]:
    return bundle.metadata.get("out_of_time") or {}


def answer_rows(
    model: Any,
    matrix: np.ndarray,
    *,
    sent: Sequence[Collection[str]] | None = None,
    reasons: bool = True,
    top: int = 3,
) -> tuple[list[dict[str, Any]], Scored]:
    """The answer a client gets for each row (the API's ``Prediction`` without task and version).

    Args:
        model: the champion and its served variants.
        matrix: the encoded rows (rows x the task's features).
        sent: per row, the request fields the client sent (never asked for again).
        reasons: compute the reasons (exact SHAP); False leaves them empty.
        top: at most this many reasons per row.

    Returns:
        Per row ``risk_score, risk_label, variant, variant_recall, variant_precision, threshold``
        (the cut that applied), ``segment`` (whose operating point: ``"behind"``, ``"on_track"``,
        or None for the variant's single threshold), ``percentile, reasons, missing, needed,
        upgrade``, and the :class:`Scored` they come from.
    """
    scored = score_rows(model, matrix, reasons=reasons, top=top)
    names = list(model.feature_names)
    servable = [b for b in family(model) if b.servable]
    best = servable[0] if servable else None
    out: list[dict[str, Any]] = []
    labels = scored.labels()
    for i, route in enumerate(scored.routes):
        known = {names[j] for j in np.flatnonzero(scored.known[i]).tolist()}
        given = sent[i] if sent is not None else ()
        upgrade: dict[str, Any] | None = None
        if best is not None and route is not best:
            add = request_fields(best.required, known=known, sent=given)
            if add:
                figures = _figures(best)
                upgrade = {
                    "variant": best.variant,
                    "add": add,
                    "recall": figures.get("recall"),
                    "precision": figures.get("precision"),
                }
        if route is None:
            options = [request_fields(b.required, known=known, sent=given) for b in servable]
            out.append(
                {
                    "risk_score": None,
                    "risk_label": UNKNOWN,
                    "variant": None,
                    "variant_recall": None,
                    "variant_precision": None,
                    "threshold": None,
                    "segment": None,
                    "percentile": None,
                    "reasons": [],
                    "missing": request_fields([n for n in names if n not in known], known=known, sent=given),
                    "needed": min(options, key=len) if options else [],
                    "upgrade": upgrade,
                }
            )
            continue
        score = float(scored.scores[i])
        percentile = float(scored.percentiles[i])
        figures = _figures(route)
        seen = route.used or names
        out.append(
            {
                "risk_score": score,
                "risk_label": labels[i],
                "variant": route.variant,
                "variant_recall": figures.get("recall"),
                "variant_precision": figures.get("precision"),
                "threshold": scored.cuts[i],
                "segment": scored.segments[i],
                "percentile": None if percentile != percentile else round(percentile, 1),
                "reasons": scored.reasons[i],
                "missing": request_fields([n for n in seen if n not in known], known=known, sent=given),
                "needed": [],
                "upgrade": upgrade,
            }
        )
    return out, scored


def score_frame(model: Any, version: str, frame: pd.DataFrame, *, task: str, top: int = 3) -> pd.DataFrame:
    """Score every row of ``frame`` (a ``features_<task>`` view slice), ranked by risk.

    Returns:
        Columns ``ra, year, task, model_version, risk_score, risk_label, rank, reasons, scored_at,
        variant, segment`` (the ``risk_scores`` table), highest risk first; ``reasons`` is a JSON
        list; ``variant`` and ``segment`` are those an :func:`answer_rows` answer names. A row no
        served variant can take has a null ``risk_score``, ``variant`` and ``segment`` and
        ``risk_label`` "unknown", ranked last.
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
            "variant": scored.variants(),
            "segment": scored.segments,
        }
    )
    out = out.sort_values(["risk_score", "ra"], ascending=[False, True], kind="stable", na_position="last")
    out = out.reset_index(drop=True)
    out.insert(6, "rank", np.arange(1, len(out) + 1))
    return out
