"""Drift checks against a champion that speak only when something moved.

What a check does, in order (model-centric signals first):

1. **No new data**: a year the champion was fitted on gives the verdict ``no new data since
   training``; nothing is compared (the champion has seen those rows and their labels).
2. **Realised recall** (when the current rows have labels): the champion's recall on them
   against its own out-of-time recall from the model card; a drop of more than
   ``recall_drop`` recommends retraining.
3. **Score PSI**: the champion's scores on the current rows against its scores on the reference.
4. **Importance-weighted feature PSI**: the PSI of every feature (missing values are a bin of
   their own, so missing-value drift counts), and their sum weighted by the model's feature
   importance.

Each PSI is judged against a threshold **calibrated** on the data itself, not a fixed rule of
thumb. The null hypothesis is "a new year that differs from the reference no more than the
training years differ from one another": each resample draws as many rows as the current frame
from one training year and compares them with the other training years, and again with all of
them on the real check's bins (with a single training year, a plain bootstrap of it); the larger
of the two thresholds is used. From those resamples, one common quantile level is chosen so
that, over the monitored signals together (score PSI, weighted PSI, and every feature carrying
at least ``min_importance`` of the model's importance), the chance that an unchanged year
crosses any threshold is ``false_alarm_rate`` (a max-statistic calibration, so the rate holds
for the verdict, not per feature). The other features form a family of their own, calibrated
the same way; they only ever lead to ``watch``. A signal must also be material (PSI at least
0.1) to count.

Verdicts: ``retrain recommended`` (a monitored signal crossed its threshold, or recall fell),
``watch`` (a signal crossed the looser threshold calibrated to ten times the false-alarm rate,
a feature the model barely uses moved, recall fell by more than half the limit, or an alarm
with no newer labelled data to retrain on), ``stable``.
Every verdict comes with its reasons in words.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.featuresets import derive, encode, encode_frame, feature_specs
from modeling.release import fit_years
from modeling.scoring import HIGH, score_rows
from monitoring.evidently_adapter import DriftResult, run_drift
from monitoring.null_psi import alarm_thresholds, null_psi, psi_columns
from monitoring.psi import PSI_MODERATE, PSI_SIGNIFICANT

STABLE = "stable"
WATCH = "watch"
RETRAIN = "retrain recommended"
NO_NEW_DATA = "no new data since training"
VERDICTS = (STABLE, WATCH, RETRAIN, NO_NEW_DATA)
SEVERITY = {NO_NEW_DATA: 0, STABLE: 0, WATCH: 1, RETRAIN: 2}
SCORE = "model score"
WEIGHTED = "importance-weighted feature PSI"


@dataclass
class Thresholds:
    """How drift is judged (settings ``PASSOS_DRIFT_*``).

    Attributes:
        false_alarm_rate: Chance that a year with nothing new is called ``retrain recommended``
            (``watch`` is calibrated to ten times it).
        resamples: Resamples of the null distribution.
        recall_drop: How far realised recall may fall below the champion's out-of-time recall.
        min_importance: A feature carrying less of the model's importance than this only
            leads to ``watch``.
        seed: Seed of the resampling, so a check is reproducible.
    """

    false_alarm_rate: float = 0.01
    resamples: int = 400
    recall_drop: float = 0.05
    min_importance: float = 0.05
    seed: int = 0


@dataclass
class Signal:
    """One monitored quantity: its PSI now, its calibrated thresholds, and what it means."""

    name: str
    kind: str  # "score", "weighted" or "feature"
    psi: float
    threshold: float  # crossing it (and PSI >= 0.1) is an alarm
    watch_threshold: float
    importance: float | None = None

    @property
    def monitored(self) -> bool:
        """Score, weighted PSI and the features the model relies on (see ``min_importance``)."""
        return self.kind != "feature" or (self.importance or 0.0) > 0.0

    def level(self, min_importance: float) -> str:
        """``retrain recommended``, ``watch`` or ``stable`` for this signal alone."""
        material = self.psi >= PSI_MODERATE
        if material and self.psi > self.threshold:
            if self.kind == "feature" and (self.importance or 0.0) < min_importance:
                return WATCH
            return RETRAIN
        if material and self.psi > self.watch_threshold:
            return WATCH
        return STABLE


@dataclass
class DriftCheck:
    """The outcome of comparing one current frame with the champion's reference."""

    verdict: str
    reasons: list[str]
    signals: list[Signal] = field(default_factory=list)
    score_psi: float | None = None
    weighted_psi: float | None = None
    performance: dict[str, float] | None = None
    champion_recall: float | None = None
    in_sample: bool = False
    calibration: dict[str, Any] = field(default_factory=dict)
    result: DriftResult | None = None

    @property
    def moved(self) -> list[str]:
        """Features whose PSI crossed its threshold (most important first)."""
        features = [s for s in self.signals if s.kind == "feature" and s.level(0.0) == RETRAIN]
        return [s.name for s in sorted(features, key=lambda s: -(s.importance or 0.0))]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (for ``report.json``)."""
        return {
            "verdict": self.verdict,
            "reasons": self.reasons,
            "score_psi": self.score_psi,
            "weighted_psi": self.weighted_psi,
            "performance": self.performance,
            "champion_recall": self.champion_recall,
            "in_sample": self.in_sample,
            "calibration": self.calibration,
            "moved": self.moved,
            "signals": [asdict(s) for s in self.signals],
        }


def champion_importance(model: Any, metadata: dict[str, Any], task: str) -> dict[str, float]:
    """The champion's global importance per feature, summing to 1.

    Read from the metadata (``feature_importance``) when the training run recorded it, else
    from the model itself; equal weights when neither knows (said in the calibration notes).
    """
    names = [spec.name for spec in feature_specs(task)]
    recorded = metadata.get("feature_importance")
    weights: dict[str, float] = {}
    if isinstance(recorded, dict) and recorded:
        weights = {name: float(recorded.get(name) or 0.0) for name in names}
    elif hasattr(model, "feature_importance"):
        try:
            found = model.feature_importance()
            weights = {name: float(found.get(name, 0.0)) for name in names}
        except (AttributeError, TypeError, ValueError):
            weights = {}
    total = sum(v for v in weights.values() if math.isfinite(v) and v > 0)
    if total <= 0:
        return {name: 1.0 / len(names) for name in names}
    return {name: max(weights.get(name, 0.0), 0.0) / total for name in names}


def frame_from_log(logged: pd.DataFrame, task: str) -> pd.DataFrame:
    """Feature columns (as the model saw them) from the prediction log's raw inputs."""
    names = [spec.name for spec in feature_specs(task)]
    if logged.empty:
        return pd.DataFrame(columns=[*names, "risk_score"])
    records = []
    for record in logged.to_dict("records"):
        clean = {k: v for k, v in record.items() if not (isinstance(v, float) and math.isnan(v))}
        records.append(derive(clean, year=clean.get("year")))
    matrix = encode(records, task)
    frame = pd.DataFrame(matrix, columns=names)
    for spec in feature_specs(task):
        if spec.kind == "categorical":
            codes = frame[spec.name]
            frame[spec.name] = [spec.categories[int(c)] if c == c else None for c in codes]
    frame["risk_score"] = logged["risk_score"].to_numpy()
    return frame


# --- the check --------------------------------------------------------------------------------


def _labelled(current: pd.DataFrame) -> bool:
    return "target" in current and bool(current["target"].notna().any())


def _realised(current: pd.DataFrame) -> dict[str, float] | None:
    """Realised recall and precision of the labels the scoring core gives (``unknown`` is not a warning)."""
    if not _labelled(current):
        return None
    rows = current.loc[current["target"].notna()]
    y = rows["target"].to_numpy(dtype=float) > 0.5
    flagged = (rows["risk_label"] == HIGH).to_numpy()
    positives, alerts = int(y.sum()), int(flagged.sum())
    hits = int((y & flagged).sum())
    return {
        "rows": float(len(rows)),
        "behind": float(positives),
        "recall": hits / positives if positives else float("nan"),
        "precision": hits / alerts if alerts else float("nan"),
    }


def check(
    model: Any,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    task: str,
    thresholds: Thresholds,
    champion_recall: float | None,
    importance: dict[str, float] | None = None,
    in_sample: bool = False,
    new_labels: bool = True,
    evidently: bool = True,
) -> DriftCheck:
    """Judge ``current`` against the champion's ``reference`` (its fit years).

    Args:
        model: The champion (``predict_proba`` on encoded rows, ``threshold``).
        reference: The task's feature rows of the champion's fit years, with ``year``.
        current: The rows to judge: a new year (may hold ``target``) or the prediction log
            (may hold ``risk_score`` already).
        task: ``current`` or ``next_year``.
        thresholds: The calibration settings.
        champion_recall: The champion's out-of-time recall (model card), None when unknown.
        importance: The champion's importance per feature (default: equal weights).
        in_sample: ``current`` holds rows the champion was fitted on: the verdict is
            ``no new data since training`` and nothing is compared.
        new_labels: Labelled rows newer than the champion's training exist, so a retrain could
            learn something. Without them an alarm is only ``watch`` (retraining now would refit
            the same data: a loop of rejected retrains).
        evidently: Also build Evidently's per-column report (the HTML page's detail).

    Returns:
        The :class:`DriftCheck`, with the verdict and its reasons in words.
    """
    if in_sample:
        return DriftCheck(
            NO_NEW_DATA,
            [
                "the champion was fitted on these rows (and their labels): comparing them with its own training data "
                "says nothing; the next check that can speak is on a year or on predictions it has not seen"
            ],
            in_sample=True,
            champion_recall=champion_recall,
        )
    if reference.empty or current.empty:
        raise ValueError(f"drift check for {task}: the {'reference' if reference.empty else 'current'} frame is empty")
    specs = feature_specs(task)
    names = [s.name for s in specs]
    weights = importance or {name: 1.0 / len(names) for name in names}
    ref = reference.copy()
    cur = current.copy()
    ref["risk_score"] = model.predict_proba(encode_frame(ref, task))
    if "risk_score" not in cur or cur["risk_score"].isna().all():
        cur["risk_score"] = model.predict_proba(encode_frame(cur, task))
    columns = [("risk_score", True), *[(s.name, s.kind == "numeric") for s in specs]]
    now = psi_columns(ref, cur, columns)
    w = np.array([weights.get(name, 0.0) for name in names])
    monitored = np.array([True, *(w >= thresholds.min_importance), True])
    # the weighted sum is a column of its own, now and under the null
    now = np.append(now, float(np.dot(now[1:], w)))
    alpha, alpha_watch = thresholds.false_alarm_rate, min(0.5, 10 * thresholds.false_alarm_rate)
    alarm = watch = np.zeros_like(now)
    method = ""
    # Both nulls, the larger threshold wins: a new year is compared with a pool it is not part of
    # (the leave-one-year-out null) on the pooled bins (the pooled null).
    for pooled in (False, True):
        null, method = null_psi(
            ref, columns, len(cur), resamples=thresholds.resamples, seed=thresholds.seed, pooled=pooled
        )
        null = np.column_stack([null, null[:, 1:] @ w])
        year_alarm, year_watch = alarm_thresholds(null, monitored, alpha, alpha_watch)
        alarm, watch = np.maximum(alarm, year_alarm), np.maximum(watch, year_watch)

    signals = [Signal(SCORE, "score", float(now[0]), float(alarm[0]), float(watch[0]))]
    for j, name in enumerate(names, start=1):
        signals.append(
            Signal(name, "feature", float(now[j]), float(alarm[j]), float(watch[j]), importance=float(w[j - 1]))
        )
    signals.append(Signal(WEIGHTED, "weighted", float(now[-1]), float(alarm[-1]), float(watch[-1])))

    if _labelled(cur) and "risk_label" not in cur:  # each row answered as a client would be
        cur["risk_label"] = score_rows(model, encode_frame(cur, task), reasons=False).labels()
    performance = _realised(cur)
    reasons_retrain: list[str] = []
    reasons_watch: list[str] = []
    recall = None if performance is None else performance.get("recall")
    if recall is not None and math.isfinite(recall) and champion_recall is not None:
        drop = champion_recall - recall
        text = (
            f"realised recall {recall:.3f} on {int(performance['behind'])} students behind"  # type: ignore[index]
            f" vs the champion's out-of-time {champion_recall:.3f}"
        )
        if drop > thresholds.recall_drop:
            reasons_retrain.append(f"{text}: down {drop:.3f}, more than the allowed {thresholds.recall_drop:.2f}")
        elif drop > thresholds.recall_drop / 2:
            reasons_watch.append(f"{text}: down {drop:.3f}, within the allowed {thresholds.recall_drop:.2f}")
    for signal in sorted(signals, key=lambda s: (s.kind != "score", -(s.importance or 0.0))):
        level = signal.level(thresholds.min_importance)
        if level == STABLE:
            continue
        what = {
            "score": "the champion's scores moved",
            "weighted": "the features moved, weighted by what the model relies on",
            "feature": f"feature {signal.name} moved",
        }[signal.kind]
        limit = signal.threshold if level == RETRAIN else signal.watch_threshold
        note = f"{what}: PSI {signal.psi:.3f} > {limit:.3f}"
        if signal.kind == "feature":
            note += f" (carries {signal.importance:.0%} of the model's importance)"
            if level == WATCH and (signal.importance or 0.0) < thresholds.min_importance:
                note += "; the model barely uses it"
        (reasons_retrain if level == RETRAIN else reasons_watch).append(note)
    if reasons_retrain and not new_labels:
        reasons_watch = [
            *reasons_retrain,
            *reasons_watch,
            "no labelled data newer than the champion's training exists, so retraining now would refit the same "
            "rows: watch, and retrain once the outcomes of these students are ingested",
        ]
        reasons_retrain = []
    if reasons_retrain:
        verdict, reasons = RETRAIN, reasons_retrain + reasons_watch
    elif reasons_watch:
        verdict, reasons = WATCH, reasons_watch
    else:
        verdict = STABLE
        reasons = [
            f"nothing moved beyond what the training years already differ by: score PSI {now[0]:.3f}, "
            f"weighted feature PSI {now[-1]:.3f}"
            + ("" if recall is None or not math.isfinite(recall) else f", realised recall {recall:.3f}")
        ]
    result = None
    if evidently:
        result = _evidently(ref, cur, task)
    return DriftCheck(
        verdict,
        reasons,
        signals,
        score_psi=round(float(now[0]), 6),
        weighted_psi=round(float(now[-1]), 6),
        performance=performance,
        champion_recall=champion_recall,
        in_sample=False,
        calibration={
            "method": method,
            "false_alarm_rate": thresholds.false_alarm_rate,
            "watch_rate": min(0.5, 10 * thresholds.false_alarm_rate),
            "resamples": thresholds.resamples,
            "min_importance": thresholds.min_importance,
            "new_labels": new_labels,
            "material_psi": PSI_MODERATE,
            "rows_current": len(cur),
            "rows_reference": len(ref),
        },
        result=result,
    )


def _evidently(ref: pd.DataFrame, cur: pd.DataFrame, task: str) -> DriftResult:
    """Evidently's per-column report, the detail under the verdict on the report page."""
    specs = feature_specs(task)
    numeric = [s.name for s in specs if s.kind == "numeric"]
    categorical = [s.name for s in specs if s.kind == "categorical"]
    ref, cur = ref.copy(), cur.copy()
    for frame in (ref, cur):
        for name in numeric:
            frame[name] = pd.to_numeric(frame[name], errors="coerce")
        for name in categorical:
            frame[name] = frame[name].astype("object")
    labelled = _labelled(cur)
    extra: list[str] = []
    if labelled:
        cur["target"] = cur["target"].astype("float")
        cur["prediction"] = (cur["risk_label"] == HIGH).astype(int)
        extra = ["target", "prediction", "risk_score"]
    return run_drift(
        ref[[*numeric, *categorical]],
        cur[[*numeric, *categorical, *extra]],
        numeric=numeric,
        categorical=categorical,
        target="target" if labelled else None,
        prediction="prediction" if labelled else None,
        prediction_proba="risk_score" if labelled else None,
    )


__all__ = [
    "NO_NEW_DATA",
    "PSI_MODERATE",
    "PSI_SIGNIFICANT",
    "RETRAIN",
    "SEVERITY",
    "STABLE",
    "VERDICTS",
    "WATCH",
    "DriftCheck",
    "Signal",
    "Thresholds",
    "champion_importance",
    "check",
    "fit_years",
    "frame_from_log",
]
