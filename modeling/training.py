"""Candidates, honest out-of-time evaluation, calibration, threshold choice and the leakage audit.

The procedure for one candidate on a set of training rows (:func:`fit_candidate`):

1. 5-fold ``GroupKFold`` by student (``ra``), so a student's rows of different years never sit
   on both sides of a fold; out-of-fold (OOF) raw scores for every training row.
2. When the training rows span at least two years (both classes on each side), **forward
   validation on the training years**: the candidate is fitted on every training year but the
   latest and scored on the latest, the same out-of-time step the test year stands for. These
   forward scores, not the OOF ones, then set LightGBM's number of rounds (early stopping on the
   latest training year), the calibration and the threshold, and they rank the candidates.
   Why: the yearly surveys differ (the NGO changed how ``fase ideal`` is set; the share behind
   falls each year), and within the pooled years the target can be near-deterministic, so
   grouped CV is near-perfect and cannot tell a setting that carries to a new year from one
   that does not. With a single training year the OOF scores play this role (``validation``
   ``"oof"``).
3. A ranking-preserving calibrator fitted on the validation scores (isotonic with a small
   Platt tie-breaker, or Platt alone below ``ISOTONIC_MIN_ROWS``; see :func:`fit_calibrator`).
4. The threshold: the highest calibrated-probability cut whose recall on the validation rows
   reaches the **operating recall** (:func:`operating_recall`): the smallest recall whose
   one-sided Wilson lower bound, at confidence :data:`RECALL_CONFIDENCE`, is at least
   ``recall_target``. Why: a cut set at exactly the target on a finite validation sample falls
   short of it on a fresh sample about half the time, while the programme needs recall first
   (a missed student gets no help, a false alarm costs a conversation). The bound asks for
   "recall >= target with high probability on rows like the validation rows"; with ~400-550
   positives it adds two to three points. It covers sampling noise only: a change in how the
   target is defined (``fase ideal`` from age, then from the school grade) cannot be seen from
   the training years and is not covered. The alternative, a margin equal to the recall lost
   when a cut set on the earlier training year is applied to the latest one, was measured on
   the training years of ``current`` (2022 OOF cut applied to 2023): no candidate lost recall,
   so that margin would be zero; it is not implemented.
5. The final scorer fitted on all training rows; it gets the rounds, calibrator and threshold
   of 2-4.

Choosing the candidate (:func:`train_candidates`): the highest **validation precision at the
operating recall**, read off each candidate's validation precision-recall curve and
interpolated between cuts (:func:`precision_at_recall`), tie-break validation ROC-AUC, then the
simpler model. Why this and not F2 at each candidate's own threshold: every candidate is
compared at the same recall, the one the programme needs, so the comparison is about how many
false alarms buy that recall. A coarse score (the rule has a handful of distinct values) cannot
sit at the target; its own threshold overshoots to recall ~1, and F2 rewards the overshoot by
an amount that grows with the base rate (flagging everyone scores F2 = 5p / (4p + 1), 0.89 at
the 61% of ``next_year``'s training year), so a "flag almost everyone" baseline could win.
Interpolation credits a coarse score with what it would give at the operating recall if its
ties were broken at random, so it is judged on its ranking, not on its granularity. On one set
of validation rows, precision at a fixed recall ``r`` is ``rP / (rP + FPR * N)``: it orders the
candidates exactly as the false-positive rate at that recall (a point of the ROC curve), so the
base rate cannot change which candidate wins. Average precision was not used: it averages over
low recalls the programme will never operate at.

:func:`train_candidates` runs it on the years before the latest labelled year and evaluates
on that latest year, which is never used to choose anything (not the rounds, the calibration,
the threshold, the rule's cut, nor which candidate wins).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Literal, cast

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold

from features.featuresets import (
    FORBIDDEN,
    categorical_indices,
    check_policy,
    encode_frame,
    feature_names,
    feature_specs,
)
from modeling.bundle import KINDS, Calibrator, Kind, LogisticModel, ModelBundle, RuleModel
from modeling.evaluation import evaluate
from passos.errors import LeakageError
from passos.settings import get_settings

logger = logging.getLogger(__name__)

Protocol = Literal["out_of_time", "grouped_cv"]
Validation = Literal["forward", "oof"]
N_FOLDS = 5
ISOTONIC_MIN_ROWS = 1000
# Weight of the Platt curve blended into isotonic calibration: enough to break every tie,
# too small to move a probability by more than one point.
TIE_WEIGHT = 0.01
MAX_ROUNDS = 300
EARLY_STOPPING_ROUNDS = 30
MIN_ROUNDS = 20
GROUP_COLUMNS = ("genero", "instituicao", "fase")
# Confidence that the validation recall at the threshold is not below the target by chance
# (one-sided Wilson bound); 0.5 aims at the target itself.
RECALL_CONFIDENCE = 0.95
# Simpler first: on an exact tie of the selection key the simpler model wins.
_SIMPLICITY = {"rule": 2, "logistic": 1, "lightgbm": 0}
# Domain knowledge the data is too small to learn reliably: a lower learning indicator (IDA)
# or a larger setback (more negative defasagem) can never lower the risk. LightGBM enforces it
# per row, so the behavioural guarantee "a lower IDA never lowers the score" holds exactly.
MONOTONE = {"ida": -1, "defasagem": -1, "prev_defasagem": -1}


@dataclass(frozen=True)
class Split:
    """Training and test rows (labelled only) and the protocol that produced them."""

    protocol: Protocol
    train: pd.DataFrame
    test: pd.DataFrame | None
    train_years: tuple[int, ...]
    test_year: int | None


@dataclass
class Predictions:
    """Held-out labels, calibrated scores and group labels (for the model card)."""

    y_true: np.ndarray
    y_score: np.ndarray
    groups: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class CandidateResult:
    """One fitted candidate: its bundle, OOF metrics on the train side, held-out metrics."""

    kind: Kind
    bundle: ModelBundle
    oof_metrics: dict[str, Any]
    test_metrics: dict[str, Any]
    test_predictions: Predictions
    validation_metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingResult:
    """Every candidate of a training run, the protocol and which candidate was chosen."""

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
    validation: Validation = "oof"
    recall_confidence: float = RECALL_CONFIDENCE

    @property
    def best(self) -> CandidateResult:
        """The chosen candidate."""
        return self.candidates[self.chosen]

    def card_metadata(self) -> dict[str, Any]:
        """The JSON-serialisable facts :func:`modeling.card.write_card` prints."""
        keep = ("n", "positives", "recall", "precision", "f1", "f2", "roc_auc", "pr_auc", "brier", "threshold")
        return {
            "task": self.task,
            "protocol": self.protocol,
            "train_years": list(self.train_years),
            "test_year": self.test_year,
            "recall_target": self.recall_target,
            "recall_confidence": self.recall_confidence,
            "operating_recall": self.best.bundle.metadata.get("operating_recall"),
            "seed": self.seed,
            "chosen": self.chosen,
            "selection_rule": self.selection_rule,
            "validation": self.validation,
            "threshold_rule": threshold_rule(self.validation, self.recall_target, self.recall_confidence),
            "candidates": {
                kind: {
                    "test": {k: result.test_metrics.get(k) for k in keep},
                    "oof": {k: result.oof_metrics.get(k) for k in keep},
                    "validation": {
                        k: result.validation_metrics.get(k) for k in (*keep, "operating_recall", "precision_at_recall")
                    },
                    "params": result.bundle.metadata.get("params", {}),
                }
                for kind, result in self.candidates.items()
            },
            "feature_aucs": self.feature_aucs,
            "audit_max_auc": self.audit_max_auc,
            "warnings": list(self.warnings),
            "forbidden": sorted(FORBIDDEN[self.task]),
        }


THRESHOLD_RULE = (
    "the highest calibrated-probability cut whose out-of-fold recall on the training years "
    "(5-fold GroupKFold by student) {aim}"
)
FORWARD_THRESHOLD_RULE = (
    "the highest calibrated-probability cut whose recall on the latest training year {aim}, "
    "that year scored by the same kind of model fitted on the earlier training years "
    "(forward validation: one year ahead, as in use; it also set the calibration, LightGBM's "
    "rounds and the choice of model)"
)


def threshold_rule(validation: Validation, recall_target: float, recall_confidence: float = 0.5) -> str:
    """How the threshold was chosen, in words (for the model card)."""
    if recall_confidence > 0.5:
        aim = (
            f"is high enough that its one-sided {recall_confidence:.0%} Wilson lower bound is at least "
            f"{recall_target:.2f} (a margin for sampling noise, not for a change in how the target is defined)"
        )
    else:
        aim = f"is at least {recall_target:.2f}"
    template = FORWARD_THRESHOLD_RULE if validation == "forward" else THRESHOLD_RULE
    return template.format(aim=aim)


def split_out_of_time(frame: pd.DataFrame) -> Split:
    """Split labelled rows by year: test = the latest year, train = all earlier years.

    With a single labelled year there is no later year to test on: ``protocol="grouped_cv"``,
    all rows train, and the evaluation uses out-of-fold predictions (GroupKFold by ``ra``).

    Raises:
        ValueError: no row has a known target.
    """
    labelled = frame.loc[frame["target"].notna()].reset_index(drop=True)
    if labelled.empty:
        raise ValueError("no row has a known target")
    years = sorted(int(y) for y in labelled["year"].unique())
    if len(years) == 1:
        return Split("grouped_cv", labelled, None, (years[0],), None)
    test_year = years[-1]
    is_test = labelled["year"] == test_year
    return Split(
        "out_of_time",
        labelled.loc[~is_test].reset_index(drop=True),
        labelled.loc[is_test].reset_index(drop=True),
        tuple(years[:-1]),
        test_year,
    )


# --------------------------------------------------------------------------------------------
# Leakage audit


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


# --------------------------------------------------------------------------------------------
# Calibration and threshold


def fit_calibrator(score: np.ndarray, y: np.ndarray, *, isotonic_min_rows: int = ISOTONIC_MIN_ROWS) -> Calibrator:
    """Fit a strictly increasing map from raw score to probability (it keeps the ranking).

    Isotonic regression with at least ``isotonic_min_rows`` rows (it overfits small samples),
    blended with weight :data:`TIE_WEIGHT` with a Platt curve so that no two different scores
    share a probability (see :class:`modeling.bundle.Calibrator`); Platt scaling (a one-feature
    logistic regression) alone below. Either way the calibrated scores have the raw scores'
    ROC-AUC, and a threshold can fall between any two rows.
    """
    score = np.asarray(score, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    # Practically unpenalised: one slope and one intercept need no shrinkage.
    platt = LogisticRegression(C=1e6, max_iter=1000).fit(score.reshape(-1, 1), y)
    a, b = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    if score.size >= isotonic_min_rows:
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(score, y)
        return Calibrator(
            "isotonic",
            x=tuple(float(v) for v in iso.X_thresholds_),
            y=tuple(float(v) for v in iso.y_thresholds_),
            a=a,
            b=b,
            # A score that ranks backwards (a <= 0) gets no tie-breaker: it would invert the ties.
            tie_weight=TIE_WEIGHT if a > 0 else 0.0,
        )
    return Calibrator("platt", a=a, b=b)


def recall_lower_bound(hits: int, positives: int, confidence: float) -> float:
    """One-sided Wilson score lower bound of a recall of ``hits`` out of ``positives``.

    Wilson rather than the normal approximation: it stays inside [0, 1] and keeps close to its
    nominal coverage near a recall of 1, where these thresholds live. ``confidence=0.5`` gives
    the observed recall itself.

    Raises:
        ValueError: ``positives`` < 1, ``hits`` outside ``[0, positives]`` or ``confidence``
            outside ``[0.5, 1)``.
    """
    if positives < 1 or not 0 <= hits <= positives:
        raise ValueError(f"need 0 <= hits <= positives and positives >= 1, got {hits} of {positives}")
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be within [0.5, 1), got {confidence!r}")
    z = NormalDist().inv_cdf(confidence)
    n, p = float(positives), hits / positives
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(max(0.0, (centre - spread) / (1 + z * z / n)))


def operating_recall(positives: int, recall_target: float, confidence: float = RECALL_CONFIDENCE) -> float:
    """The smallest recall ``k / positives`` whose :func:`recall_lower_bound` reaches ``recall_target``.

    The threshold aims here rather than at ``recall_target`` itself (see the module docstring).
    It depends only on the number of validation positives, so every candidate validated on the
    same rows aims at the same recall. When even finding every positive cannot certify the
    target (few positives), it is 1.0: the best that can be asked of the validation rows.

    Raises:
        ValueError: ``positives`` < 1, ``recall_target`` outside [0, 1] or a bad ``confidence``.
    """
    if not 0.0 <= recall_target <= 1.0:
        raise ValueError(f"recall_target must be within [0, 1], got {recall_target!r}")
    if positives < 1:
        raise ValueError("cannot set an operating recall without positive rows")
    # The bound never exceeds the observed recall, so no k below the target's can qualify.
    first = max(0, int(np.floor(recall_target * positives - 1e-9)))
    for hits in range(first, positives + 1):
        if recall_lower_bound(hits, positives, confidence) >= recall_target - 1e-12:
            return hits / positives
    return 1.0


def precision_at_recall(y: np.ndarray, score: np.ndarray, recall: float) -> float | None:
    """Precision at exactly ``recall`` on the precision-recall curve of ``score``, interpolated.

    Between two consecutive cuts the alerts of the tied block are taken in a random order, so
    true and false positives grow in proportion (the interpolation of Davis & Goadrich, 2006,
    linear in counts, not in precision). A coarse score is thereby judged at the same recall
    as a fine one. None when ``y`` has no positive row.

    Raises:
        ValueError: ``recall`` outside (0, 1] or ``y`` and ``score`` of different lengths.
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    score = np.asarray(score, dtype=np.float64).ravel()
    if y.shape != score.shape:
        raise ValueError(f"y has {y.size} rows but score has {score.size}")
    if not 0.0 < recall <= 1.0:
        raise ValueError(f"recall must be within (0, 1], got {recall!r}")
    positives = float(y.sum())
    if positives == 0:
        return None
    # Alerts at each distinct cut, highest cut first: cumulative counts of whole tied blocks.
    cuts, inverse = np.unique(-score, return_inverse=True)
    tp = np.cumsum(np.bincount(inverse, weights=y, minlength=cuts.size))
    fp = np.cumsum(np.bincount(inverse, weights=1.0 - y, minlength=cuts.size))
    wanted = recall * positives
    i = int(np.searchsorted(tp, wanted - 1e-9, side="left"))
    tp_before = tp[i - 1] if i else 0.0
    fp_before = fp[i - 1] if i else 0.0
    share = (wanted - tp_before) / (tp[i] - tp_before)
    false_alarms = fp_before + share * (fp[i] - fp_before)
    return float(wanted / (wanted + false_alarms))


def choose_threshold(y: np.ndarray, proba: np.ndarray, recall_target: float) -> float:
    """The highest cut ``t`` on ``proba`` such that ``recall(proba >= t) >= recall_target``.

    Raises:
        ValueError: ``y`` has no positive row.
    """
    y = np.asarray(y, dtype=np.float64)
    proba = np.asarray(proba, dtype=np.float64)
    positives = np.sort(proba[y == 1.0])
    if positives.size == 0:
        raise ValueError("cannot choose a threshold without positive rows")
    cuts = np.unique(proba)
    recall = (positives.size - np.searchsorted(positives, cuts, side="left")) / positives.size
    return float(cuts[recall >= recall_target - 1e-12].max())


# --------------------------------------------------------------------------------------------
# Candidates


def lightgbm_params(task: str, seed: int) -> dict[str, Any]:
    """Small-data LightGBM parameters (one thread, deterministic, monotone in :data:`MONOTONE`)."""
    return {
        "objective": "binary",
        "metric": "binary_logloss",
        "learning_rate": 0.03,
        "num_leaves": 15,
        "min_data_in_leaf": 20,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "min_data_per_group": 20,
        "cat_smooth": 10.0,
        "monotone_constraints": [MONOTONE.get(name, 0) for name in feature_names(task)],
        "num_threads": 1,
        "deterministic": True,
        "force_row_wise": True,
        "seed": seed,
        "verbose": -1,
    }


def _dataset(X: np.ndarray, y: np.ndarray, task: str) -> lgb.Dataset:
    return lgb.Dataset(
        X,
        label=y,
        feature_name=feature_names(task),
        categorical_feature=categorical_indices(task),
        free_raw_data=False,
        params={"verbose": -1},
    )


def _lightgbm_oof(
    X: np.ndarray, y: np.ndarray, task: str, folds: list[tuple[np.ndarray, np.ndarray]], params: dict[str, Any]
) -> tuple[int, np.ndarray]:
    """Rounds chosen by grouped-CV early stopping, and the OOF raw scores at those rounds.

    The only tuning: the number of rounds, on the training rows' folds. Reusing the same folds
    for the OOF scores makes them a shade optimistic, a price paid for one parameter.
    """
    result = lgb.cv(
        params,
        _dataset(X, y, task),
        num_boost_round=MAX_ROUNDS,
        folds=folds,
        stratified=False,
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
        return_cvbooster=True,
    )
    cvbooster = cast(lgb.CVBooster, result["cvbooster"])
    rounds = max(MIN_ROUNDS, int(cvbooster.best_iteration))
    oof = np.empty(len(y))
    for booster, (_, held_out) in zip(cvbooster.boosters, folds, strict=True):
        oof[held_out] = booster.predict(X[held_out], raw_score=True, num_iteration=rounds, num_threads=1)
    return rounds, oof


def _fit_lightgbm(X: np.ndarray, y: np.ndarray, task: str, params: dict[str, Any], rounds: int) -> lgb.Booster:
    return lgb.train(params, _dataset(X, y, task), num_boost_round=rounds)


def _lightgbm_forward(
    X: np.ndarray, y: np.ndarray, task: str, fit_rows: np.ndarray, held_out: np.ndarray, params: dict[str, Any]
) -> tuple[int, np.ndarray]:
    """Rounds chosen by early stopping on the latest training year, and its raw forward scores.

    The booster learns from the earlier years only; the rounds are those that carry to the
    next year, a sounder guide than grouped CV when the pooled years are near-separable.
    """
    booster = lgb.train(
        params,
        _dataset(X[fit_rows], y[fit_rows], task),
        num_boost_round=MAX_ROUNDS,
        valid_sets=[_dataset(X[held_out], y[held_out], task)],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    rounds = max(MIN_ROUNDS, int(booster.best_iteration))
    return rounds, np.asarray(booster.predict(X[held_out], raw_score=True, num_iteration=rounds, num_threads=1))


def forward_split(years: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Positions of the forward-validation rows: (earlier training years, latest training year).

    None when the rows span a single year, or either side holds a single class (no model can be
    fitted, or no recall measured, there).
    """
    years = np.asarray(years)
    distinct = np.unique(years)
    if distinct.size < 2:
        return None
    latest = years == distinct.max()
    fit_rows, held_out = np.flatnonzero(~latest), np.flatnonzero(latest)
    if np.unique(y[fit_rows]).size < 2 or np.unique(y[held_out]).size < 2:
        return None
    return fit_rows, held_out


def _fit_logistic(X: np.ndarray, y: np.ndarray, task: str) -> LogisticModel:
    specs = feature_specs(task)
    categorical = categorical_indices(task)
    numeric = [j for j in range(len(specs)) if j not in categorical]
    with warnings.catch_warnings():
        # A feature absent in every training year (IPP before 2023) has no median: impute 0.
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        medians = np.nanmedian(X[:, numeric], axis=0) if numeric else np.empty(0)
    medians = np.where(np.isnan(medians), 0.0, medians)
    levels = [np.arange(len(specs[j].categories), dtype=np.float64) for j in categorical]
    owners = numeric + numeric + [j for j, lv in zip(categorical, levels, strict=True) for _ in lv]
    model = LogisticModel(
        numeric=numeric,
        medians=medians,
        categorical=categorical,
        categories=levels,
        owners=np.asarray(owners, dtype=np.int64),
        mean=np.zeros(len(owners)),
        scale=np.ones(len(owners)),
        coef=np.zeros(len(owners)),
        intercept=0.0,
    )
    raw = model.design(X)
    model.mean = raw.mean(axis=0)
    std = raw.std(axis=0)
    model.scale = np.where(std > 0, std, 1.0)
    fitted = LogisticRegression(C=1.0, max_iter=2000).fit(model.design(X), y)
    model.coef = fitted.coef_[0].astype(np.float64)
    model.intercept = float(fitted.intercept_[0])
    return model


def _youden_cut(values: np.ndarray, y: np.ndarray) -> float:
    """The cut ``c`` maximising TPR - FPR of ``values > c`` (smallest on ties)."""
    known = ~np.isnan(values)
    values, y = values[known], y[known]
    positives, negatives = max(1.0, float(y.sum())), max(1.0, float((1 - y).sum()))
    best_cut, best_j = float(np.median(values)) if values.size else 0.0, -np.inf
    for cut in np.unique(values):
        flag = values > cut
        j = float(y[flag].sum()) / positives - float((1 - y)[flag].sum()) / negatives
        if j > best_j:
            best_cut, best_j = float(cut), j
    return best_cut


def _fit_rule(X: np.ndarray, y: np.ndarray, task: str) -> RuleModel:
    """``next_year``: behind next year if behind this year (``defasagem < 0``); ``current``:
    behind if behind last year (``prev_defasagem < 0``). Both fall back, when the deciding
    value is missing, to last year's setback and then to age for the level
    (``idade_menos_fase`` above a cut chosen on the training rows).
    """
    names = feature_names(task)
    links: list[tuple[int, float, float]] = []
    if task == "next_year":
        links.append((names.index("defasagem"), -1.0, 0.0))
    links.append((names.index("prev_defasagem"), -1.0, 0.0))
    age = names.index("idade_menos_fase")
    links.append((age, 1.0, _youden_cut(X[:, age], y)))
    rule = RuleModel(links=links)
    _, used = rule.decide(X)
    rule.shares = [float(np.mean(used == i)) for i in range(len(links))]
    return rule


def _fit_simple(kind: Kind, X: np.ndarray, y: np.ndarray, task: str) -> LogisticModel | RuleModel:
    return _fit_logistic(X, y, task) if kind == "logistic" else _fit_rule(X, y, task)


def _folds(groups: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError("grouped cross-validation needs at least two students")
    splitter = GroupKFold(n_splits=min(N_FOLDS, n_groups), shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(groups)), groups=groups))


def fit_candidate(
    kind: Kind,
    frame: pd.DataFrame,
    task: str,
    *,
    recall_target: float,
    seed: int,
    recall_confidence: float = RECALL_CONFIDENCE,
) -> tuple[ModelBundle, np.ndarray]:
    """Run the module's procedure (OOF, calibration, threshold, final fit) on labelled rows.

    Args:
        kind: ``"lightgbm"``, ``"logistic"`` or ``"rule"``.
        frame: training rows (``ra``, ``year``, ``target`` and the task's features); rows of
            unknown target are dropped.
        task: ``"current"`` or ``"next_year"``.
        recall_target: the validation recall the threshold must reach, with confidence
            ``recall_confidence`` (see :func:`operating_recall`).
        seed: seeds the folds and LightGBM.
        recall_confidence: confidence of the recall bound; 0.5 aims at ``recall_target`` itself.

    Returns:
        The bundle and the calibrated OOF probabilities of the labelled rows (in frame order).
        ``bundle.metadata`` records which validation set the rounds, calibration and threshold
        (``"validation"``: ``"forward"`` or ``"oof"``), its years, the recall aimed at
        (``"operating_recall"``) and its metrics (``"validation_metrics"``, with
        ``precision_at_recall``, the interpolated precision at the operating recall).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown candidate kind {kind!r}; expected one of {', '.join(KINDS)}")
    check_policy(task, feature_names(task))
    rows = frame.loc[frame["target"].notna()].reset_index(drop=True)
    X = encode_frame(rows, task)
    y = rows["target"].to_numpy(dtype=np.float64)
    if y.min() == y.max():
        raise ValueError(f"the training rows of task {task!r} hold a single class ({y[0]:.0f})")
    years = rows["year"].to_numpy()
    folds = _folds(rows["ra"].astype(str).to_numpy(), seed)
    forward = forward_split(years, y)
    params: dict[str, Any] = {}
    if kind == "lightgbm":
        params = lightgbm_params(task, seed)
        rounds, oof_raw = _lightgbm_oof(X, y, task, folds, params)
        oof_rounds = rounds
        if forward is not None:
            rounds, forward_raw = _lightgbm_forward(X, y, task, *forward, params)
        estimator: Any = _fit_lightgbm(X, y, task, params, rounds)
        params = {**params, "num_boost_round": rounds, "oof_rounds": oof_rounds}
    else:
        oof_raw = np.empty(len(y))
        for fit_rows, held_out in folds:
            oof_raw[held_out] = _fit_simple(kind, X[fit_rows], y[fit_rows], task).raw_score(X[held_out])
        if forward is not None:
            fit_rows, held_out = forward
            forward_raw = _fit_simple(kind, X[fit_rows], y[fit_rows], task).raw_score(X[held_out])
        estimator = _fit_simple(kind, X, y, task)
        if kind == "rule":
            params = {"links": [[feature_names(task)[c], s, cut] for c, s, cut in estimator.links]}
    if forward is None:
        validation: Validation = "oof"
        y_val, raw_val = y, oof_raw
        validation_years = sorted(int(v) for v in np.unique(years))
    else:
        validation = "forward"
        y_val, raw_val = y[forward[1]], forward_raw
        validation_years = [int(years[forward[1]][0])]
    calibrator = fit_calibrator(raw_val, y_val)
    oof_proba = calibrator(oof_raw)
    validation_proba = calibrator(raw_val)
    aim = operating_recall(int(y_val.sum()), recall_target, recall_confidence)
    threshold = choose_threshold(y_val, validation_proba, aim)
    validation_metrics = evaluate(y_val, validation_proba, threshold)
    validation_metrics.update(
        operating_recall=aim, precision_at_recall=precision_at_recall(y_val, validation_proba, aim)
    )
    bundle = ModelBundle(
        task=task,
        kind=kind,
        feature_names=feature_names(task),
        threshold=threshold,
        estimator=estimator,
        calibrator=calibrator,
        categories={s.name: s.categories for s in feature_specs(task) if s.kind == "categorical"},
        metadata={
            "train_years": sorted(int(v) for v in rows["year"].unique()),
            "n_train": len(y),
            "positives_train": int(y.sum()),
            "recall_target": recall_target,
            "recall_confidence": recall_confidence,
            "operating_recall": aim,
            "seed": seed,
            "folds": len(folds),
            "calibration": calibrator.method,
            "params": params,
            "validation": validation,
            "validation_years": validation_years,
            "validation_metrics": validation_metrics,
            "oof_metrics": evaluate(y, oof_proba, threshold),
        },
    )
    logger.info(
        "fitted %s for %s on %d rows: threshold %.3f for recall %.3f (%s calibration on %s validation, years %s)",
        kind,
        task,
        len(y),
        threshold,
        aim,
        calibrator.method,
        validation,
        validation_years,
    )
    return bundle, oof_proba


def _groups(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    return {name: rows[name].to_numpy(dtype=object) for name in GROUP_COLUMNS if name in rows}


def _selection_key(precision: float | None, roc_auc: float | None, kind: str) -> tuple[float, float, int]:
    return (round(precision or 0.0, 3), round(roc_auc or 0.0, 3), _SIMPLICITY[kind])


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
) -> TrainingResult:
    """Fit every candidate on the training years, evaluate on the held-out year, choose one.

    Selection rule (``select_on="oof"``, the default): the highest precision at the operating
    recall on the validation rows (forward validation when the training years allow it, else
    out-of-fold; interpolated, :func:`precision_at_recall`), tie-break validation ROC-AUC, then
    the simpler model. The module docstring says why this and not F2. Choosing on the training
    side keeps the test year untouched: the chosen model's test figure is an honest estimate,
    not the best of three draws. ``select_on="test"`` applies the same key to the test-year
    predictions at ``recall_target`` instead (optimistic; for comparison only).

    Args:
        frame: the feature frame (``ra, year, target`` and the task's features).
        task: ``"current"`` or ``"next_year"``.
        recall_target: the validation recall each candidate's threshold must reach, with
            confidence ``recall_confidence``.
        seed: seeds folds and LightGBM; the same seed gives the same scores.
        kinds: the candidates to fit.
        audit_max_auc: the leakage audit's limit; default ``settings.audit_max_auc``.
        select_on: ``"oof"`` (default: the validation rows) or ``"test"``; see above.
        recall_confidence: see :func:`operating_recall`; 0.5 aims at ``recall_target`` itself.

    A candidate whose OOF ROC-AUC exceeds ``audit_max_auc`` is recorded in
    ``TrainingResult.warnings`` (a target recomputed from several features together, which the
    single-feature audit cannot see); it is not an error.

    Raises:
        LeakageError: a feature breaks the policy or the audit (checked on the training rows).
    """
    max_auc = get_settings().audit_max_auc if audit_max_auc is None else audit_max_auc
    split = split_out_of_time(frame)
    aucs = assert_no_leakage(split.train, task, max_auc=max_auc)
    candidates: dict[str, CandidateResult] = {}
    train_groups = _groups(split.train)
    y_train = split.train["target"].to_numpy(dtype=np.float64)
    for kind in kinds:
        bundle, oof_proba = fit_candidate(
            kind, split.train, task, recall_target=recall_target, seed=seed, recall_confidence=recall_confidence
        )
        oof_metrics = evaluate(y_train, oof_proba, bundle.threshold, groups=train_groups)
        if split.test is None:
            # One labelled year: the OOF predictions are the only held-out ones there are.
            held_out = Predictions(y_train, oof_proba, train_groups)
            test_metrics = oof_metrics
        else:
            y_test = split.test["target"].to_numpy(dtype=np.float64)
            proba = bundle.predict_proba(encode_frame(split.test, task))
            held_out = Predictions(y_test, proba, _groups(split.test))
            test_metrics = evaluate(y_test, proba, bundle.threshold, groups=held_out.groups)
        bundle.metadata.update(protocol=split.protocol, test_year=split.test_year, oof_metrics=oof_metrics)
        validation_metrics = bundle.metadata["validation_metrics"]
        candidates[kind] = CandidateResult(kind, bundle, oof_metrics, test_metrics, held_out, validation_metrics)
    notes = _combination_warnings(candidates, max_auc)
    validation: Validation = (
        "forward" if all(c.bundle.metadata["validation"] == "forward" for c in candidates.values()) else "oof"
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
    aim = candidates[chosen].bundle.metadata["operating_recall"]
    if select_on == "test":
        described = f"test-year precision at recall {recall_target:.2f}"
    elif validation == "forward":
        years = candidates[chosen].bundle.metadata["validation_years"]
        described = (
            f"forward-validation precision at recall {aim:.3f} (fit on the earlier training years, "
            f"scored on {years[0]})"
        )
    else:
        described = f"out-of-fold precision at recall {aim:.3f}"
    rule = (
        f"highest {described}, every candidate read at that same recall on its interpolated "
        "precision-recall curve; tie-break ROC-AUC, then the simpler model"
    )
    logger.info(
        "task %s (%s, train %s, test %s): chose %s; test recall %s, precision %s",
        task,
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
        validation=validation,
        recall_confidence=recall_confidence,
    )


def _combination_warnings(candidates: Mapping[str, CandidateResult], max_auc: float) -> list[str]:
    """Warn when a model separates the training rows better than any honest feature may.

    The single-feature audit cannot see a target that is a function of several features
    together (``fase ideal`` follows from age, so ``idade`` with ``fase`` recomputes the setback).
    An out-of-fold ROC-AUC above the audit limit is the symptom; it is recorded, not raised,
    because whether such a task is worth a model is a product decision.
    """
    notes = []
    for kind, result in candidates.items():
        auc = result.oof_metrics.get("roc_auc")
        if auc is not None and auc > max_auc:
            notes.append(
                f"{kind}: out-of-fold ROC-AUC {auc:.3f} on the training years exceeds the audit limit "
                f"{max_auc:.2f}; the features together may recompute the target"
            )
    for note in notes:
        logger.warning("possible leakage by combination: %s", note)
    return notes


def refit_on_all(
    source: ModelBundle | CandidateResult,
    frame: pd.DataFrame,
    *,
    recall_target: float,
    seed: int,
    audit_max_auc: float | None = None,
    recall_confidence: float = RECALL_CONFIDENCE,
) -> ModelBundle:
    """The same kind of model, refitted on every labelled year (the served model once accepted).

    The procedure is unchanged (forward validation on the latest labelled year, or OOF, for
    the calibration and threshold, then a final fit on all rows), so the served threshold
    still aims at ``recall_target`` with confidence ``recall_confidence``. The
    returned bundle has no held-out evaluation of its own: its honest figures are those of the
    candidate it was refitted from (kept in ``metadata["evaluated_as"]``).
    """
    bundle = source.bundle if isinstance(source, CandidateResult) else source
    max_auc = get_settings().audit_max_auc if audit_max_auc is None else audit_max_auc
    labelled = frame.loc[frame["target"].notna()].reset_index(drop=True)
    assert_no_leakage(labelled, bundle.task, max_auc=max_auc)
    refit, _ = fit_candidate(
        bundle.kind, labelled, bundle.task, recall_target=recall_target, seed=seed, recall_confidence=recall_confidence
    )
    refit.metadata.update(
        protocol="refit_all_years",
        test_year=None,
        evaluated_as={
            "protocol": bundle.metadata.get("protocol"),
            "train_years": bundle.metadata.get("train_years"),
            "test_year": bundle.metadata.get("test_year"),
        },
    )
    return refit
