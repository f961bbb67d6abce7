"""Fit the candidates by cross-fitting, evaluate them out of time, choose one.

One procedure (:func:`fit_candidate`) produces both the model that is evaluated and the model
that is served: the cross-fitted members, calibrated and thresholded on their own out-of-fold
scores. :func:`train_candidates` runs it on the years before the latest labelled year and tests
on that year, which chooses nothing. The reasoning is in ``docs/modeling.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.featuresets import FORBIDDEN, check_policy, encode_frame, feature_names, feature_specs
from modeling.baselines import compare_with_baselines
from modeling.bundle import KINDS, Kind, ModelBundle
from modeling.calibration import CalibrationError, fit_calibration, reliability_table
from modeling.candidates import cross_fit_folds, fit_members
from modeling.evaluation import bootstrap_intervals, evaluate
from modeling.leakage import assert_no_leakage, audit_leakage, combination_warnings, feature_aucs
from modeling.segments import fit_segment_thresholds
from modeling.splits import Protocol, Split, split_out_of_time
from modeling.threshold import (
    RECALL_CONFIDENCE,
    choose_threshold,
    operating_recall,
    precision_at_recall,
    recall_lower_bound,
)
from modeling.variants import required_features, variant_features
from passos.settings import get_settings

__all__ = [
    "RECALL_CONFIDENCE",
    "CandidateResult",
    "Predictions",
    "Split",
    "TrainingResult",
    "assert_no_leakage",
    "audit_leakage",
    "feature_aucs",
    "fit_candidate",
    "operating_recall",
    "precision_at_recall",
    "recall_lower_bound",
    "split_out_of_time",
    "train_candidates",
]

logger = logging.getLogger(__name__)

GROUP_COLUMNS = ("genero", "instituicao", "fase")
# Simpler first: on an exact tie of the selection key the simpler model wins.
_SIMPLICITY = {"rule": 2, "logistic": 1, "lightgbm": 0}
# The rule needs these columns; a variant without them has no rule candidate.
_RULE_NEEDS = ("idade_menos_fase",)


@dataclass
class Predictions:
    """Held-out labels, calibrated scores and group labels (for the model card)."""

    y_true: np.ndarray
    y_score: np.ndarray
    groups: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class CandidateResult:
    """One fitted candidate: its bundle, out-of-fold metrics, held-out metrics."""

    kind: Kind
    bundle: ModelBundle
    oof_metrics: dict[str, Any]
    test_metrics: dict[str, Any]
    test_predictions: Predictions
    validation_metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingResult:
    """Every candidate of a training run of one variant, the protocol and which was chosen."""

    task: str
    protocol: Protocol
    train_years: tuple[int, ...]
    test_year: int | None
    recall_target: float
    seed: int
    candidates: dict[str, CandidateResult]
    chosen: str
    selection_rule: str
    feature_aucs: dict[str, float | None]
    audit_max_auc: float
    warnings: list[str] = field(default_factory=list)
    validation: str = "cross_fit"
    recall_confidence: float = RECALL_CONFIDENCE
    variant: str = "full"
    baselines: dict[str, Any] | None = None

    @property
    def best(self) -> CandidateResult:
        """The chosen candidate."""
        return self.candidates[self.chosen]

    def card_metadata(self) -> dict[str, Any]:
        """The JSON-serialisable facts :func:`modeling.card.write_card` prints."""
        keep = (
            "n",
            "positives",
            "recall",
            "precision",
            "f1",
            "f2",
            "roc_auc",
            "pr_auc",
            "brier",
            "threshold",
            "bootstrap_95",
        )
        meta = self.best.bundle.metadata
        return {
            "task": self.task,
            "variant": self.variant,
            "protocol": self.protocol,
            "train_years": list(self.train_years),
            "test_year": self.test_year,
            "recall_target": self.recall_target,
            "recall_confidence": self.recall_confidence,
            "operating_recall": meta.get("operating_recall"),
            "threshold_gap": meta.get("threshold_gap"),
            "seed": self.seed,
            "chosen": self.chosen,
            "selection_rule": self.selection_rule,
            "validation": self.validation,
            "fold_scheme": meta.get("fold_scheme"),
            "threshold_rule": threshold_rule(
                meta.get("fold_scheme", "grouped_cv"), self.recall_target, self.recall_confidence
            ),
            "candidates": {
                kind: {
                    "test": {k: result.test_metrics.get(k) for k in keep},
                    "oof": {k: result.oof_metrics.get(k) for k in keep},
                    "validation": {
                        k: result.validation_metrics.get(k) for k in (*keep, "operating_recall", "precision_at_recall")
                    },
                    "params": _short_params(result.bundle.metadata.get("params", {})),
                }
                for kind, result in self.candidates.items()
            },
            "feature_aucs": self.feature_aucs,
            "audit_max_auc": self.audit_max_auc,
            "warnings": list(self.warnings),
            "forbidden": sorted(FORBIDDEN[self.task]),
            "baselines": self.baselines,
        }


def threshold_rule(fold_scheme: str, recall_target: float, recall_confidence: float = 0.5) -> str:
    """How the threshold was chosen, in words (for the model card)."""
    folds = (
        "each year scored by the members fitted on the other years"
        if fold_scheme == "leave_one_year_out"
        else "5 folds grouped by student"
    )
    if recall_confidence > 0.5:
        aim = f"a recall whose one-sided {recall_confidence:.0%} Wilson lower bound is at least {recall_target:.2f}"
    else:
        aim = f"a recall of at least {recall_target:.2f}"
    return (
        f"on the served members' own out-of-fold scores ({folds}), the middle (in log-odds) of the gap of "
        f"cuts that reach {aim} and add no validation false alarm"
    )


def _short_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != "monotone_constraints"}


def fit_candidate(
    kind: Kind,
    frame: pd.DataFrame,
    task: str,
    *,
    recall_target: float,
    seed: int,
    recall_confidence: float = RECALL_CONFIDENCE,
    variant: str = "full",
) -> tuple[ModelBundle, np.ndarray]:
    """Cross-fit one candidate on labelled rows and calibrate and threshold it on its own OOF scores.

    Args:
        kind: ``"lightgbm"``, ``"logistic"`` or ``"rule"``.
        frame: training rows (``ra``, ``year``, ``target`` and the task's features); rows of
            unknown target are dropped.
        task: ``"current"`` or ``"next_year"``.
        recall_target: the out-of-fold recall the threshold must reach, with confidence
            ``recall_confidence``.
        seed: seeds the folds and LightGBM.
        recall_confidence: confidence of the recall bound; 0.5 aims at ``recall_target`` itself.
        variant: which field set the model sees (``modeling.variants``).

    Returns:
        The bundle (an ensemble of the fold members) and the calibrated out-of-fold
        probabilities of the labelled rows, in frame order.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown candidate kind {kind!r}; expected one of {', '.join(KINDS)}")
    names = feature_names(task)
    check_policy(task, names)
    used = variant_features(task, variant)
    rows = frame.loc[frame["target"].notna()].reset_index(drop=True)
    X = encode_frame(rows, task)
    masked = [j for j, name in enumerate(names) if name not in set(used)]
    X[:, masked] = np.nan
    y = rows["target"].to_numpy(dtype=np.float64)
    if y.min() == y.max():
        raise ValueError(f"the training rows of task {task!r} hold a single class ({y[0]:.0f})")
    years = rows["year"].to_numpy()
    folds, scheme = cross_fit_folds(years, rows["ra"].astype(str).to_numpy(), y, seed)
    members, oof_raw, params = fit_members(kind, X, y, task, folds, seed)
    calibrator, calibration = fit_calibration(oof_raw, y, groups=years)
    oof_proba = calibrator(oof_raw)
    aim = operating_recall(int(y.sum()), recall_target, recall_confidence)
    threshold = choose_threshold(y, oof_proba, aim)
    oof_metrics = evaluate(y, oof_proba, threshold.cut)
    oof_metrics.update(operating_recall=aim, precision_at_recall=precision_at_recall(y, oof_proba, aim))
    segment_cuts = (
        fit_segment_thresholds(
            y, oof_proba, rows["defasagem"].to_numpy(), threshold=threshold.cut, recall_confidence=recall_confidence
        )
        if "defasagem" in rows
        else None
    )
    bundle = ModelBundle(
        task=task,
        kind=kind,
        feature_names=names,
        threshold=threshold.cut,
        members=members,
        calibrator=calibrator,
        categories={s.name: s.categories for s in feature_specs(task) if s.kind == "categorical"},
        variant=variant,
        used=() if variant == "full" else used,
        required=required_features(rows, used),
    )
    latest = years == years.max()
    bundle.reference = tuple(float(v) for v in np.sort(bundle.predict_proba(X[latest])))
    bundle.metadata = {
        "variant": variant,
        "used": list(used),
        "required": list(bundle.required),
        "train_years": sorted(int(v) for v in np.unique(years)),
        "reference_year": int(years.max()),
        "n_train": len(y),
        "positives_train": int(y.sum()),
        "recall_target": recall_target,
        "recall_confidence": recall_confidence,
        "operating_recall": aim,
        "seed": seed,
        "members": len(members),
        "fold_scheme": scheme,
        "calibration": calibration,
        "params": params,
        "validation": "cross_fit",
        "validation_metrics": oof_metrics,
        "oof_metrics": oof_metrics,
        "oof_reliability": reliability_table(y, oof_proba),
        "segment_thresholds": segment_cuts,
        "threshold_gap": {
            "highest": threshold.highest,
            "lowest": threshold.lowest,
            "gap_logit": threshold.gap_logit,
            "wide": threshold.wide,
            "oof_recall": threshold.recall,
            "oof_false_alarms": threshold.false_alarms,
        },
    }
    logger.info(
        "fitted %s/%s for %s on %d rows (%d members, %s): threshold %.3f for recall %.3f, gap %.2f log-odds",
        kind,
        variant,
        task,
        len(y),
        len(members),
        scheme,
        threshold.cut,
        aim,
        threshold.gap_logit,
    )
    return bundle, oof_proba


def _groups(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    return {name: rows[name].to_numpy(dtype=object) for name in GROUP_COLUMNS if name in rows}


def _selection_key(precision: float | None, roc_auc: float | None, kind: str) -> tuple[float, float, int]:
    return (round(precision or 0.0, 3), round(roc_auc or 0.0, 3), _SIMPLICITY[kind])


def candidate_kinds(task: str, variant: str, kinds: Sequence[Kind] = KINDS) -> tuple[Kind, ...]:
    """The candidates a variant can field (the rule needs the age-for-level feature)."""
    used = set(variant_features(task, variant))
    return tuple(k for k in kinds if k != "rule" or all(n in used for n in _RULE_NEEDS))


def train_candidates(
    frame: pd.DataFrame,
    task: str,
    *,
    recall_target: float,
    seed: int,
    kinds: Sequence[Kind] = KINDS,
    audit_max_auc: float | None = None,
    select_on: Literal["oof", "test"] = "oof",
    recall_confidence: float = RECALL_CONFIDENCE,
    variant: str = "full",
) -> TrainingResult:
    """Fit every candidate on the training years, evaluate on the held-out year, choose one.

    Selection (``select_on="oof"``): the highest out-of-fold precision at the operating recall
    (interpolated, :func:`precision_at_recall`), tie-break out-of-fold ROC-AUC, then the simpler
    model. ``select_on="test"`` applies the key to the test year instead (optimistic; for
    comparison only).

    A candidate whose scores admit no increasing calibration (:class:`CalibrationError`) is
    left out, with a warning in the result.

    Raises:
        LeakageError: a feature breaks the policy or the audit (checked on the training rows).
        CalibrationError: no candidate could be calibrated.
    """
    max_auc = get_settings().audit_max_auc if audit_max_auc is None else audit_max_auc
    split = split_out_of_time(frame)
    aucs = assert_no_leakage(split.train, task, max_auc=max_auc)
    candidates: dict[str, CandidateResult] = {}
    train_groups = _groups(split.train)
    y_train = split.train["target"].to_numpy(dtype=np.float64)
    uncalibrated: list[str] = []
    for kind in candidate_kinds(task, variant, kinds):
        try:
            bundle, oof_proba = fit_candidate(
                kind,
                split.train,
                task,
                recall_target=recall_target,
                seed=seed,
                recall_confidence=recall_confidence,
                variant=variant,
            )
        except CalibrationError as error:
            logger.warning("%s/%s for %s left out: %s", kind, variant, task, error)
            uncalibrated.append(f"{kind}: left out, {error}")
            continue
        oof_metrics = evaluate(y_train, oof_proba, bundle.threshold, groups=train_groups)
        if split.test is None:
            held_out = Predictions(y_train, oof_proba, train_groups)
            test_metrics = oof_metrics
        else:
            y_test = split.test["target"].to_numpy(dtype=np.float64)
            proba = bundle.predict_proba(encode_frame(split.test, task))
            held_out = Predictions(y_test, proba, _groups(split.test))
            test_metrics = evaluate(y_test, proba, bundle.threshold, groups=held_out.groups)
        test_metrics["reliability"] = reliability_table(held_out.y_true, held_out.y_score)
        bundle.metadata.update(protocol=split.protocol, test_year=split.test_year)
        validation_metrics = bundle.metadata["validation_metrics"]
        candidates[kind] = CandidateResult(kind, bundle, oof_metrics, test_metrics, held_out, validation_metrics)
    if not candidates:
        raise CalibrationError(f"no candidate of {task}/{variant} can be calibrated: {'; '.join(uncalibrated)}")
    notes = uncalibrated + combination_warnings(
        {k: c.oof_metrics.get("roc_auc") for k, c in candidates.items()}, max_auc
    )
    keys: dict[str, tuple[float, float, int]] = {}
    for name, candidate in candidates.items():
        if select_on == "test":
            held = candidate.test_predictions
            precision = precision_at_recall(held.y_true, held.y_score, recall_target) if held.y_true.any() else None
            keys[name] = _selection_key(precision, candidate.test_metrics.get("roc_auc"), name)
        else:
            metrics = candidate.validation_metrics
            keys[name] = _selection_key(metrics.get("precision_at_recall"), metrics.get("roc_auc"), name)
    chosen = max(keys, key=lambda k: keys[k])
    held = candidates[chosen].test_predictions
    if split.test is not None and held.y_true.size:
        candidates[chosen].test_metrics["bootstrap_95"] = bootstrap_intervals(
            held.y_true, held.y_score, candidates[chosen].bundle.threshold, seed=seed
        )
    baselines = None
    if split.test is not None and held.y_true.size:
        baselines = compare_with_baselines(
            split.test, task, held.y_true, held.y_score, candidates[chosen].bundle.threshold
        )
    aim = candidates[chosen].bundle.metadata["operating_recall"]
    gap = candidates[chosen].bundle.metadata["threshold_gap"]
    if gap["wide"]:
        notes.append(
            f"{chosen}: the out-of-fold scores leave a gap of {gap['gap_logit']:.1f} log-odds with no false "
            "alarm below the recall target; classes this separable suggest the target is a rule the "
            "features recompute, and a new year that applies the rule differently will move recall"
        )
    described = (
        f"test-year precision at recall {recall_target:.2f}"
        if select_on == "test"
        else f"out-of-fold precision at recall {aim:.3f}"
    )
    rule = (
        f"highest {described}, every candidate read at that same recall on its interpolated "
        "precision-recall curve; tie-break ROC-AUC, then the simpler model"
    )
    logger.info(
        "task %s/%s (%s, train %s, test %s): chose %s; test recall %s, precision %s",
        task,
        variant,
        split.protocol,
        split.train_years,
        split.test_year,
        chosen,
        candidates[chosen].test_metrics["recall"],
        candidates[chosen].test_metrics["precision"],
    )
    return TrainingResult(
        task=task,
        protocol=split.protocol,
        train_years=split.train_years,
        test_year=split.test_year,
        recall_target=recall_target,
        seed=seed,
        candidates=candidates,
        chosen=chosen,
        selection_rule=rule,
        feature_aucs=aucs,
        audit_max_auc=max_auc,
        warnings=notes,
        recall_confidence=recall_confidence,
        variant=variant,
        baselines=baselines,
    )
