"""One-line rules beside every model, on the same out-of-time year: what a model must beat.

``current`` (behind this year) is defined by age and level, so a rule that compares the level
with the level ideal for the age nearly *is* the target. ``next_year`` is where a model can add
value: a student behind now is usually behind next year (persistence), and an on-track student
with no slack for next year's age (``folga_proximo_ano <= 0``) is the next most likely.

A model **beats** a rule on a segment when, somewhere on its precision-recall curve, it reaches
a higher recall at a precision at least the rule's: it could be operated to find more students
without more false alarms. A model that does not is flagged in the gate's verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve

from features.featuresets import fase_esperada

# Float slack: a model whose recall equals the rule's to rounding does not beat it.
_EPS = 1e-9


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)


def _behind_now(frame: pd.DataFrame) -> np.ndarray:
    return _column(frame, "defasagem") < 0


def _on_track_now(frame: pd.DataFrame) -> np.ndarray:
    return _column(frame, "defasagem") >= 0


def _no_slack(frame: pd.DataFrame) -> np.ndarray:
    return _behind_now(frame) | (_on_track_now(frame) & (_column(frame, "folga_proximo_ano") <= 0))


def _below_level_for_sheet_age(frame: pd.DataFrame) -> np.ndarray:
    ideal = np.array([fase_esperada(age) for age in _column(frame, "idade")], dtype=np.float64)
    return _column(frame, "fase") < ideal


def _below_level_for_age(frame: pd.DataFrame) -> np.ndarray:
    return _column(frame, "atraso_esperado") < 0


@dataclass(frozen=True)
class Rule:
    """A baseline: a name, what it says in words, and the rows it flags (False where it cannot tell)."""

    name: str
    says: str
    flags: Callable[[pd.DataFrame], np.ndarray]


@dataclass(frozen=True)
class Segment:
    """A subset of the test year's students the rules and the model are compared on."""

    name: str
    rows: Callable[[pd.DataFrame], np.ndarray]


RULES: dict[str, tuple[Rule, ...]] = {
    "current": (
        Rule(
            "level_for_sheet_age",
            "behind when the level is below the level ideal for the age in the sheet (`fase < fase_esperada(idade)`)",
            _below_level_for_sheet_age,
        ),
        Rule(
            "level_for_age",
            "behind when the level is below the level ideal for the age on 31 March (`atraso_esperado < 0`)",
            _below_level_for_age,
        ),
    ),
    "next_year": (
        Rule("persistence", "behind now, so behind next year (`defasagem < 0`)", _behind_now),
        Rule(
            "slack",
            "behind now, or on track with no slack for next year's age (`folga_proximo_ano <= 0`)",
            _no_slack,
        ),
    ),
}

SEGMENTS: dict[str, tuple[Segment, ...]] = {
    "current": (Segment("all", lambda f: np.ones(len(f), dtype=bool)),),
    "next_year": (
        Segment("all", lambda f: np.ones(len(f), dtype=bool)),
        Segment("on track now", _on_track_now),
    ),
}


def _counts(y: np.ndarray, flagged: np.ndarray) -> dict[str, Any]:
    positives, n_flagged = int(y.sum()), int(flagged.sum())
    caught = int((flagged & y).sum())
    return {
        "n": int(y.size),
        "positives": positives,
        "flagged": n_flagged,
        "caught": caught,
        "recall": caught / positives if positives else None,
        "precision": caught / n_flagged if n_flagged else None,
        "flag_rate": n_flagged / y.size if y.size else None,
    }


def recall_at_precision(y: np.ndarray, score: np.ndarray, precision: float) -> float | None:
    """The highest recall the score reaches at some threshold whose precision is at least ``precision``.

    Returns:
        The recall, 0.0 when no threshold reaches that precision, None without positives.
    """
    y = np.asarray(y, dtype=bool)
    if not y.any():
        return None
    if y.all():
        return 1.0
    curve_precision, curve_recall, _ = precision_recall_curve(y, np.asarray(score, dtype=np.float64))
    reach = curve_precision >= precision - _EPS
    return float(curve_recall[reach].max()) if reach.any() else 0.0


def compare_with_baselines(
    frame: pd.DataFrame, task: str, y_true: np.ndarray, y_score: np.ndarray, threshold: float
) -> dict[str, Any]:
    """Each rule and the model on each segment of the test year, and whether the model beats each rule.

    Args:
        frame: the test year's rows, in the order of ``y_true`` (the rules read their columns).
        task: ``"current"`` or ``"next_year"``.
        y_true: the rows' labels, 0/1.
        y_score: the model's calibrated scores on those rows; NaN where it gave none (the row is
            never flagged and ranks below every scored row).
        threshold: the model's alert threshold.

    Returns:
        ``{"rules": {name: says}, "segments": {segment: {"model": counts, "rules": {name: counts |
        {"model_recall_at_rule_precision", "beaten"}}}}}``; counts are ``n, positives, flagged,
        caught, recall, precision, flag_rate``.
    """
    if len(frame) != len(y_true) or len(y_true) != len(y_score):
        raise ValueError(f"frame has {len(frame)} rows, y_true {len(y_true)}, y_score {len(y_score)}")
    y = np.asarray(y_true, dtype=np.float64) == 1.0
    score = np.asarray(y_score, dtype=np.float64)
    unknown = np.isnan(score)
    if unknown.any():
        floor = float(np.nanmin(score)) - 1.0 if (~unknown).any() else 0.0
        score = np.where(unknown, floor, score)
        threshold = max(float(threshold), floor + 0.5)
    rules = RULES.get(task, ())
    flags = {rule.name: np.asarray(rule.flags(frame), dtype=bool) for rule in rules}
    segments: dict[str, Any] = {}
    for segment in SEGMENTS.get(task, ()):
        inside = np.asarray(segment.rows(frame), dtype=bool)
        ys, ss = y[inside], score[inside]
        model = _counts(ys, ss >= threshold)
        compared: dict[str, Any] = {}
        for rule in rules:
            counts = _counts(ys, flags[rule.name][inside])
            reach = (
                recall_at_precision(ys, ss, counts["precision"])
                if counts["precision"] is not None and counts["recall"] is not None
                else None
            )
            counts["model_recall_at_rule_precision"] = reach
            counts["beaten"] = None if reach is None else bool(reach > counts["recall"] + _EPS)
            compared[rule.name] = counts
        segments[segment.name] = {"model": model, "rules": compared}
    return {"rules": {rule.name: rule.says for rule in rules}, "segments": segments}


def baseline_flags(baselines: Mapping[str, Any] | None) -> list[str]:
    """One sentence per rule, per segment, the model does not beat (empty: it beats them all)."""
    if not baselines:
        return []
    out = []
    for segment, table in (baselines.get("segments") or {}).items():
        for name, row in (table.get("rules") or {}).items():
            if row.get("beaten") is False:
                out.append(
                    f"does not beat the {name} rule on {segment} students: the rule finds "
                    f"{_fmt(row['recall'])} of them at precision {_fmt(row['precision'])}; the model at that "
                    f"precision or better finds {_fmt(row['model_recall_at_rule_precision'])}"
                )
    return out


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.3f}"


def segment_names(task: str) -> Sequence[str]:
    """The segments the comparison reports for ``task``."""
    return tuple(segment.name for segment in SEGMENTS.get(task, ()))
