"""The candidate models and their cross-fitting: members, out-of-fold raw scores, parameters.

Each candidate is fitted once per fold; the fold models are the *members* of the served
ensemble and their out-of-fold scores are what calibration and the threshold see. The folds
are whole years when the rows span several (a new year is what the model meets in use), else
five folds grouped by student. Why: ``docs/modeling.md``.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal, cast

import lightgbm as lgb
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from features.featuresets import categorical_indices, feature_names, feature_specs
from modeling.bundle import Kind, LogisticModel, RuleModel

Folds = list[tuple[np.ndarray, np.ndarray]]
FoldScheme = Literal["leave_one_year_out", "grouped_cv"]
N_FOLDS = 5
MAX_ROUNDS = 300
EARLY_STOPPING_ROUNDS = 30
MIN_ROUNDS = 20
# Domain knowledge the data is too small to learn reliably: a lower learning indicator (IDA)
# or a larger setback (more negative defasagem) can never lower the risk. LightGBM enforces it
# per row, so the behavioural guarantee "a lower IDA never lowers the score" holds exactly.
MONOTONE = {"ida": -1, "defasagem": -1, "prev_defasagem": -1}


def cross_fit_folds(years: np.ndarray, groups: np.ndarray, y: np.ndarray, seed: int) -> tuple[Folds, FoldScheme]:
    """Leave-one-year-out folds when every year has both classes on both sides, else grouped CV.

    Raises:
        ValueError: fewer than two students (no fold can be held out).
    """
    years = np.asarray(years)
    distinct = np.unique(years)
    if distinct.size >= 2:
        folds = [(np.flatnonzero(years != year), np.flatnonzero(years == year)) for year in distinct]
        if all(np.unique(y[fit]).size == 2 and np.unique(y[held]).size == 2 for fit, held in folds):
            return folds, "leave_one_year_out"
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError("grouped cross-validation needs at least two students")
    splitter = GroupKFold(n_splits=min(N_FOLDS, n_groups), shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(groups)), groups=groups)), "grouped_cv"


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


def fit_members(
    kind: Kind, X: np.ndarray, y: np.ndarray, task: str, folds: Folds, seed: int
) -> tuple[list[Any], np.ndarray, dict[str, Any]]:
    """One model per fold: the members, their out-of-fold raw scores and the parameters.

    LightGBM's number of rounds is the one parameter tuned: early stopping on the folds' mean
    held-out loss, the same rounds for every member.
    """
    oof = np.empty(len(y))
    if kind == "lightgbm":
        params = lightgbm_params(task, seed)
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
        members: list[Any] = []
        for booster, (_, held_out) in zip(cvbooster.boosters, folds, strict=True):
            # Keep exactly the chosen rounds: the member is the model its OOF scores came from.
            member = lgb.Booster(model_str=booster.model_to_string(num_iteration=rounds))
            oof[held_out] = member.predict(X[held_out], raw_score=True, num_threads=1)
            members.append(member)
        return members, oof, {**params, "num_boost_round": rounds}
    simple: list[LogisticModel | RuleModel] = []
    for fit_rows, held_out in folds:
        fitted = (
            _fit_logistic(X[fit_rows], y[fit_rows], task)
            if kind == "logistic"
            else _fit_rule(X[fit_rows], y[fit_rows], task)
        )
        oof[held_out] = fitted.raw_score(X[held_out])
        simple.append(fitted)
    names = feature_names(task)
    links = [[[names[c], s, cut] for c, s, cut in m.links] for m in simple if isinstance(m, RuleModel)]
    return list(simple), oof, ({"links": links} if kind == "rule" else {})


def _dataset(X: np.ndarray, y: np.ndarray, task: str) -> lgb.Dataset:
    return lgb.Dataset(
        X,
        label=y,
        feature_name=feature_names(task),
        categorical_feature=categorical_indices(task),
        free_raw_data=False,
        params={"verbose": -1},
    )


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
