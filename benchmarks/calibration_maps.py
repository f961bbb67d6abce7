"""Calibration maps compared on the test year: pooled Platt, Platt with the slope fitted within the
years, and pooled isotonic regression, each fitted on the same out-of-fold scores.

Candidates trained on the years before the latest (seed from the settings); the out-of-fold raw
scores are recovered from the served calibrator, then each map is fitted on them and judged on the
latest year (ROC-AUC, Brier, log-loss). The rows are read in the order of a `passos sql`
``select *`` on the feature view; pass ``--ordered`` to sort them by year and ra as the train flow
does (the folds, and so the sign of a pooled slope near zero, depend on it).

Usage: ``PASSOS_HOME=var .venv/bin/python -m benchmarks.calibration_maps [--ordered]`` after ``make run``.
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from features.featuresets import encode_frame
from modeling.calibration import _intercept, _logistic, fit_calibration
from modeling.training import fit_candidate
from passos.settings import get_settings
from warehouse.connection import connect

CASES = (
    ("current", "full", "lightgbm"),
    ("current", "example", "logistic"),
    ("current", "example", "lightgbm"),
    ("next_year", "full", "lightgbm"),
)


def main() -> None:
    settings = get_settings()
    order = " order by year, ra" if "--ordered" in sys.argv else ""
    for task, variant, kind in CASES:
        with connect(settings, read_only=True) as con:
            frame = con.execute(f"select * from features_{task}{order}").df()
        labelled = frame.loc[frame["target"].notna()]
        latest = labelled["year"].max()
        train, test = labelled.loc[labelled["year"] < latest], labelled.loc[labelled["year"] == latest]
        bundle, oof = fit_candidate(
            kind, train, task, recall_target=settings.recall_target, seed=settings.seed, variant=variant
        )
        raw_oof = (np.log(oof / (1 - oof)) - bundle.calibrator.b) / bundle.calibrator.a
        y, years = train["target"].to_numpy(), train["year"].to_numpy()
        raw, y_test = bundle.raw_score(encode_frame(test, task)), test["target"].to_numpy()
        hi, lo = (y.sum() + 1) / (y.sum() + 2), 1 / ((1 - y).sum() + 2)
        a, b = _logistic(raw_oof.reshape(-1, 1), np.where(y == 1, hi, lo), intercept=True)
        target = np.where(y == 1, hi, lo)
        groups = (years[:, None] == np.unique(years)[None, :]).astype(float)
        a_within = _logistic(np.column_stack([raw_oof, groups]), target, intercept=False)[0]
        b_within = _intercept(a_within * raw_oof, target)
        within, how = fit_calibration(raw_oof, y, groups=years)
        isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(raw_oof, y)
        maps = {
            "pooled Platt, sign free": (f"{a:+.2f}", 1 / (1 + np.exp(-(a * raw + b)))),
            "slope within years, always": (f"{a_within:+.2f}", 1 / (1 + np.exp(-(a_within * raw + b_within)))),
            "served (slope > 0)": (f"{within.a:+.2f}", within(raw)),
            "pooled isotonic": (f"{len(np.unique(isotonic.predict(raw_oof)))} steps", isotonic.predict(raw)),
        }
        print(f"\n{task} / {variant} / {kind} (served map: {how})")
        for name, (slope, proba) in maps.items():
            print(
                f"| {name} | {slope} | {roc_auc_score(y_test, proba):.3f} | {brier_score_loss(y_test, proba):.3f} | "
                f"{log_loss(y_test, np.clip(proba, 1e-6, 1 - 1e-6)):.3f} |"
            )


if __name__ == "__main__":
    main()
