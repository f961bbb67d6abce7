"""Figures from the served path: the router, as clients meet it, over the out-of-time test year.

A client is answered by the richest variant its fields allow, or "unknown" (``modeling/scoring.py``).
The figures of one model scored on every row say nothing of that, so the model card, ``/model`` and
the README report these instead: the variants trained without the test year, routed as the service
routes, over every student of the test year.

* the share answered "unknown", and the share answered by each variant;
* recall counting "unknown" as missed (no warning reached the student), and recall on the scored rows;
* precision and ROC-AUC on the scored rows;
* 95 % bootstrap intervals of those figures (students resampled);
* for ``next_year``, the same split by students behind now and students on track now, labelled as
  served (each segment at its own operating point) and, ``before``, at each variant's single
  threshold; with the early warning's targets (:data:`TARGETS`) met or missed, and by how much.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.featuresets import encode_frame
from modeling.scoring import HIGH, UNKNOWN, score_rows
from modeling.variants import VARIANT_ORDER

RESAMPLES = 1000
# Groups of next_year's test rows by this year's setback (the target of the operating point).
NOW_GROUPS = {"behind_now": "behind now (defasagem < 0)", "on_track_now": "on track now (defasagem >= 0)"}
# The early warning's targets out of time: (group, metric, minimum). The on-track students who
# fall behind are the ones the sheet does not already name.
TARGETS = (
    ("on_track_now", "recall", 0.80),
    ("on_track_now", "precision", 0.45),
    ("all", "recall", 0.90),
)


def held_out_router(primary: Any, variants: Sequence[Any]) -> Any:
    """A champion as the service would hold it, from bundles fitted without the test year.

    ``variants`` are the siblings that will be served; each is marked servable here (the gate
    accepted it), whatever its own metadata says.
    """
    siblings = [replace(v, metadata=dict(v.metadata) | {"gate": {"accepted": True}}, variants=[]) for v in variants]
    return replace(primary, variants=siblings)


def served_figures(
    router: Any, test: pd.DataFrame, task: str, *, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, Any]:
    """Route every labelled row of ``test`` as the service would, and measure what clients got.

    Args:
        router: a champion and its served variants, fitted without the test rows (:func:`held_out_router`).
        test: the test year's rows of ``features_<task>`` with a known ``target``.
        task: ``current`` or ``next_year``.
        resamples: bootstrap resamples for the 95 % intervals.
        seed: the bootstrap's seed.

    Returns:
        ``n, positives, shares, answered, recall, recall_scored, precision, roc_auc, bootstrap_95``
        (see :func:`figures`), and for ``next_year`` ``by_now``: the same per group of :data:`NOW_GROUPS`.
    """
    labelled = test.loc[test["target"].notna()].reset_index(drop=True)
    matrix = encode_frame(labelled, task)
    scored = score_rows(router, matrix, reasons=False)
    y = labelled["target"].to_numpy(dtype=np.float64) == 1.0
    labels = np.asarray(scored.labels(), dtype=object)
    variants = np.asarray([v or UNKNOWN for v in scored.variants()], dtype=object)
    out = figures(y, scored.scores, labels, variants, resamples=resamples, seed=seed)
    if task == "next_year" and "defasagem" in labelled:
        single = np.asarray(score_rows(router, matrix, reasons=False, per_segment=False).labels(), dtype=object)
        now = labelled["defasagem"].to_numpy(dtype=np.float64)
        masks = {"behind_now": now < 0, "on_track_now": now >= 0}
        out["by_now"] = {
            name: figures(y[m], scored.scores[m], labels[m], variants[m], resamples=resamples, seed=seed)
            for name, m in masks.items()
        }
        before = figures(y, scored.scores, single, variants, resamples=resamples, seed=seed)
        before["by_now"] = {
            name: figures(y[m], scored.scores[m], single[m], variants[m], resamples=resamples, seed=seed)
            for name, m in masks.items()
        }
        out["before"] = before
        out["segments_answered"] = {
            name: int(sum(1 for s in scored.segments if s == name)) for name in ("behind", "on_track")
        }
        out["targets"] = targets(out)
    return out


def targets(served: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each of :data:`TARGETS` on the served figures: the value, the minimum, met or not, the gap."""
    out = []
    for group, metric, minimum in TARGETS:
        part = served if group == "all" else (served.get("by_now") or {}).get(group) or {}
        value = part.get(metric)
        out.append(
            {
                "group": group,
                "metric": metric,
                "minimum": minimum,
                "value": value,
                "met": value is not None and value >= minimum,
                "gap": None if value is None else round(value - minimum, 3),
            }
        )
    return out


def figures(
    y: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    variants: np.ndarray,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """The served-path figures of one set of rows.

    Args:
        y: True where the student turned out behind.
        scores: the answering variant's probability (NaN when unknown).
        labels: ``high``/``low``/``unknown`` per row.
        variants: the answering variant per row (``unknown`` when none).
        resamples: bootstrap resamples.
        seed: the bootstrap's seed.

    Returns:
        ``n``; ``positives``; ``shares`` (per variant and ``unknown``, of all rows); ``answered``
        (counts); ``caught`` and ``flagged`` (counts); ``recall`` (unknown counted as missed);
        ``recall_scored``, ``precision`` and ``roc_auc`` on the scored rows; ``flag_rate`` (flagged
        of all rows); ``bootstrap_95`` of those five (None where undefined).
    """
    n = int(y.size)
    names = [*VARIANT_ORDER, UNKNOWN]
    counts = {name: int(np.sum(variants == name)) for name in names}
    out: dict[str, Any] = {
        "n": n,
        "positives": int(y.sum()),
        "answered": counts,
        "shares": {name: (count / n if n else None) for name, count in counts.items()},
    }
    out |= _point(y, scores, labels)
    out["caught"] = int(((labels == HIGH) & y).sum())
    out["flagged"] = int((labels == HIGH).sum())
    out["bootstrap_95"] = _bootstrap(y, scores, labels, resamples=resamples, seed=seed)
    return out


def _point(y: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    alert = labels == HIGH
    scored = labels != UNKNOWN
    positives = int(y.sum())
    hits = int((alert & y).sum())
    in_scored = int((y & scored).sum())
    both = 0 < int(y[scored].sum()) < int(scored.sum())
    return {
        "recall": hits / positives if positives else None,
        "recall_scored": hits / in_scored if in_scored else None,
        "precision": hits / int(alert.sum()) if alert.any() else None,
        "roc_auc": float(roc_auc_score(y[scored], scores[scored])) if both else None,
        "flag_rate": int(alert.sum()) / y.size if y.size else None,
    }


def _bootstrap(
    y: np.ndarray, scores: np.ndarray, labels: np.ndarray, *, resamples: int, seed: int
) -> dict[str, list[float] | None]:
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {"recall": [], "recall_scored": [], "precision": [], "roc_auc": [], "flag_rate": []}
    for _ in range(resamples if y.size else 0):
        pick = rng.integers(0, y.size, y.size)
        for name, value in _point(y[pick], scores[pick], labels[pick]).items():
            if value is not None:
                draws[name].append(value)
    return {
        name: [float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975))] if len(v) >= max(resamples // 2, 1) else None
        for name, v in draws.items()
    }


def _fmt(value: object) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _interval(figures: Mapping[str, Any], name: str) -> str:
    bounds = (figures.get("bootstrap_95") or {}).get(name)
    return f"{_fmt(figures.get(name))} ({bounds[0]:.3f}-{bounds[1]:.3f})" if bounds else _fmt(figures.get(name))


def figure_row(label: str, figures: Mapping[str, Any]) -> list[str]:
    """One table row: students, unknown share, per-variant shares, recall (unknown as missed), the rest."""
    shares = figures.get("shares") or {}
    return [
        label,
        str(figures.get("n")),
        _fmt(shares.get(UNKNOWN)),
        " / ".join(_fmt(shares.get(name)) for name in VARIANT_ORDER),
        _interval(figures, "recall"),
        _interval(figures, "recall_scored"),
        _interval(figures, "precision"),
        _interval(figures, "roc_auc"),
    ]


FIGURE_HEADER = (
    "students",
    "unknown",
    "full / core / example",
    "recall (unknown = missed)",
    "recall (scored)",
    "precision (scored)",
    "ROC-AUC (scored)",
)


def served_lines(figures: Mapping[str, Any] | None, *, test_year: object = None) -> list[str]:
    """The model card's section on the served path's out-of-time figures."""
    lines = ["## Out of time, as served", ""]
    if not figures:
        return [*lines, "No held-out year: no served-path figures."]
    lines.append(
        f"Every student of the test year {test_year if test_year is not None else ''} answered as the service "
        "answers a request with the same fields: by the richest served variant the row's known fields allow "
        '(variants fitted without the test year), or "unknown". Shares are of all students; recall counts '
        "an unknown answer as a missed student; precision and ROC-AUC are on the scored rows. In brackets: "
        f"95 % bootstrap intervals ({RESAMPLES:,} resamples of the students)."
    )
    lines.append("")
    rows = [figure_row("all", figures)]
    rows += [figure_row(NOW_GROUPS[name], part) for name, part in (figures.get("by_now") or {}).items()]
    lines.append("| rows | " + " | ".join(FIGURE_HEADER) + " |")
    lines.append("|" + "---|" * (len(FIGURE_HEADER) + 1))
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, *segment_lines(figures)]


SEGMENT_HEADER = (
    "students",
    "operating point",
    "n",
    "behind next year",
    "caught",
    "flagged",
    "recall",
    "precision",
    "flag rate",
)


def segment_lines(figures: Mapping[str, Any]) -> list[str]:
    """The per-segment table, one threshold against the per-segment operating point, and the targets."""
    before = figures.get("before")
    if not before:
        return []
    lines = [
        "",
        "### The early warning per segment",
        "",
        "Students behind now (`defasagem < 0`) are named by the sheet; the early warning exists for the "
        "students on track now who fall behind next year. Before: every variant's single threshold; after: "
        "each segment's cut chosen on training-side out-of-fold scores (what the service applies). Recall "
        "counts an unknown answer as missed; precision is of the flagged; flag rate is of all students. "
        "In brackets: 95 % bootstrap intervals.",
        "",
        "| " + " | ".join(SEGMENT_HEADER) + " |",
        "|" + "---|" * len(SEGMENT_HEADER),
    ]
    groups = [("all", None), *((NOW_GROUPS[name], name) for name in NOW_GROUPS)]
    for label, key in groups:
        for point, source in (("one threshold", before), ("per segment", figures)):
            part = source if key is None else (source.get("by_now") or {}).get(key) or {}
            positives, n = part.get("positives"), part.get("n")
            share = f" ({positives / n:.0%})" if positives is not None and n else ""
            row = [label, point, str(n), f"{positives}{share}", str(part.get("caught")), str(part.get("flagged"))]
            row += [_interval(part, "recall"), _interval(part, "precision"), _interval(part, "flag_rate")]
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Targets (per-segment operating point):", ""]
    for target in figures.get("targets") or []:
        group = "all students" if target["group"] == "all" else NOW_GROUPS[target["group"]]
        value = _fmt(target["value"])
        verdict = "met" if target["met"] else "missed"
        gap = "n/a" if target["gap"] is None else f"{target['gap']:+.3f}"
        lines.append(f"- {target['metric']} of {group} >= {target['minimum']:.2f}: {value}, {verdict} ({gap})")
    return lines
