"""The early warning per segment: one threshold against the per-segment operating point.

``next_year`` trained without the latest year's truth (the 2022→2023 pairs), every variant gated
as the train flow does, scoring the 2023 students through the router of served variants
(:func:`modeling.scoring.score_rows`, which labels each row at its segment's cut; ``per_segment=False``
gives the single threshold), truth from 2024. Rows of the table: students behind now
(``defasagem < 0``) and on track now; 95 % bootstrap intervals (1,000 resamples of the rows).

Usage: ``PASSOS_HOME=var .venv/bin/python -m benchmarks.operating_point`` after ``make run``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.featuresets import encode_frame
from flows.train import judge
from modeling.scoring import score_rows
from modeling.segments import ON_TRACK_NOW
from modeling.training import train_candidates
from modeling.variants import VARIANT_ORDER
from passos.settings import get_settings
from warehouse.connection import connect


def _interval(draws: list[float]) -> str:
    return f"[{np.quantile(draws, 0.025):.3f}, {np.quantile(draws, 0.975):.3f}]" if draws else "[n/a]"


def _table(title: str, y: np.ndarray, flags: np.ndarray, behind_now: np.ndarray, unknown: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    print(f"\n{title}\n")
    print(
        "| students in 2023 | n | behind in 2024 | caught | recall [95 %] | flagged | precision [95 %] | flag rate | unknown |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, rows in (("already behind", behind_now), ("on track", ~behind_now), ("all", np.ones_like(y))):
        yy, ff = y[rows], flags[rows]
        recalls, precisions = [], []
        for _ in range(1000):
            pick = rng.integers(0, yy.size, yy.size)
            a, b = yy[pick], ff[pick]
            if a.any():
                recalls.append(float((a & b).sum() / a.sum()))
            if b.any():
                precisions.append(float((a & b).sum() / b.sum()))
        caught = int((yy & ff).sum())
        print(
            f"| {name} | {rows.sum()} | {yy.sum()} ({yy.mean():.0%}) | {caught} | {caught / yy.sum():.3f} "
            f"{_interval(recalls)} | {ff.sum()} | {caught / max(ff.sum(), 1):.3f} {_interval(precisions)} | "
            f"{ff.mean():.0%} | {unknown[rows].sum()} |"
        )


def main() -> None:
    settings = get_settings()
    with connect(settings, read_only=True) as con:
        frame = con.execute("select * from features_next_year where year <= 2023 order by year, ra").df()
    results = {
        variant: train_candidates(
            frame,
            "next_year",
            recall_target=settings.recall_target,
            seed=settings.seed,
            audit_max_auc=settings.audit_max_auc,
            variant=variant,
        )
        for variant in VARIANT_ORDER
    }
    primary = results["full"].best.bundle
    for result in results.values():
        result.best.bundle.metadata["gate"] = {
            "accepted": judge(settings, result, None, settings.gate_min_recall("next_year")).accepted
        }
    primary.variants = [r.best.bundle for n, r in results.items() if n != "full" and r.best.bundle.servable]
    test = frame.loc[(frame["year"] == 2023) & frame["target"].notna()].reset_index(drop=True)
    matrix = encode_frame(test, "next_year")
    scored = score_rows(primary, matrix, reasons=False)
    y = test["target"].to_numpy() == 1.0
    unknown = np.isnan(scored.scores)
    before = np.array(
        [label == "high" for label in score_rows(primary, matrix, reasons=False, per_segment=False).labels()]
    )
    after = np.array([label == "high" for label in scored.labels()])
    behind_now = (test["defasagem"] < 0).to_numpy()
    slack = ~behind_now & (test["folga_proximo_ano"] <= 0).to_numpy()
    print("served variants:", [b.variant for b in (primary, *primary.variants)], f"threshold {primary.threshold:.3f}")
    print(
        "on-track cut (out of fold, 2022 pairs):",
        pd.Series(primary.metadata["segment_thresholds"][ON_TRACK_NOW]).to_dict(),
    )
    _table("One threshold", y, before, behind_now, unknown)
    _table("Per-segment operating point", y, after, behind_now, unknown)
    share = primary.metadata["segment_thresholds"][ON_TRACK_NOW]["oof_flag_share"]
    on_track_scored = np.where(~behind_now & ~unknown)[0]
    order = np.argsort(-scored.scores[on_track_scored], kind="stable")
    by_rank = before & behind_now
    by_rank[on_track_scored[order[: round(share * (~behind_now).sum())]]] = True
    _table(
        f"Not stored: the on-track out-of-fold flag share ({share:.0%}) applied by rank",
        y,
        by_rank,
        behind_now,
        unknown,
    )
    _table("Not stored: the per-segment cut with the slack rule as a floor", y, after | slack, behind_now, unknown)
    _table(
        "Persistence and the slack rule (`defasagem < 0`, or on track with `folga_proximo_ano <= 0`)",
        y,
        behind_now | slack,
        behind_now,
        unknown,
    )


if __name__ == "__main__":
    main()
