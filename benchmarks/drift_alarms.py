"""How often drift cries wolf, and how loud it is on a real shift: measured on the real data.

Usage: PASSOS_HOME=var .venv/bin/python benchmarks/drift_alarms.py [--draws 40]
(needs the champions of `make pipeline`). For each task's champion:

* **False alarms**: ``--draws`` unchanged "new years", each drawn (with replacement, as many
  rows as a real year) from one of the champion's own training years picked at random, with a
  seed the calibration did not use; the share judged ``retrain recommended`` and ``watch``.
* **Loudness**: the latest year with one indicator moved down by 1 and by 2 points (clipped to
  0-10), judged as a new year with new labels; the verdict and whether that indicator is named.

Results in benchmarks/results/drift_alarms.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import machine, save
from modeling.registry import Registry
from monitoring.drift import RETRAIN, WATCH, Thresholds, champion_importance, check, fit_years
from passos.settings import get_settings
from warehouse.connection import connect

INDICATORS = ("iaa", "ieg", "ips", "ipp", "ida", "ipv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=40)
    args = parser.parse_args()
    settings = get_settings()
    registry = Registry.from_settings(settings)
    thresholds = Thresholds(
        false_alarm_rate=settings.drift_false_alarm_rate, resamples=settings.drift_resamples, seed=settings.seed
    )
    results: dict[str, object] = {"machine": machine(), "thresholds": thresholds.__dict__, "draws": args.draws}
    for task in ("current", "next_year"):
        version = registry.champion(task)
        if version is None:
            continue
        model, metadata = registry.load_checked(task, version)
        years = fit_years(metadata)
        with connect(settings, read_only=True) as con:
            marks = ", ".join("?" * len(years))
            reference = con.execute(f"select * from features_{task} where year in ({marks})", years).df()
            latest = con.execute(f"select * from features_{task} where year = (select max(year) from students)").df()
        importance = champion_importance(model, metadata, task)
        rng = np.random.default_rng(12345)
        started = time.perf_counter()
        verdicts = []
        for _ in range(args.draws):
            year = int(rng.choice(years))
            pool = reference.loc[reference["year"] == year]
            sample = pool.iloc[rng.integers(0, len(pool), size=len(latest))].drop(columns="target")
            outcome = check(
                model,
                reference,
                sample,
                task=task,
                thresholds=thresholds,
                champion_recall=None,
                importance=importance,
                evidently=False,
            )
            verdicts.append(outcome.verdict)
        seconds = (time.perf_counter() - started) / args.draws
        loud = {}
        for name in INDICATORS:
            for shift in (-1.0, -2.0):
                moved = latest.drop(columns="target").copy()
                moved[name] = np.clip(moved[name] + shift, 0, 10)
                outcome = check(
                    model,
                    reference,
                    moved,
                    task=task,
                    thresholds=thresholds,
                    champion_recall=None,
                    importance=importance,
                    evidently=False,
                )
                loud[f"{name} {shift:+.0f}"] = {
                    "verdict": outcome.verdict,
                    "named": any(reason.startswith(f"feature {name} moved") for reason in outcome.reasons),
                    "importance": round(importance.get(name, 0.0), 3),
                }
        results[task] = {
            "model_version": version,
            "fit_years": years,
            "unchanged_years": {
                "retrain_recommended": verdicts.count(RETRAIN) / len(verdicts),
                "watch": verdicts.count(WATCH) / len(verdicts),
            },
            "seconds_per_check": round(seconds, 3),
            "latest_year_with_one_indicator_moved": loud,
        }
        print(task, results[task])
    save("drift_alarms", results)


if __name__ == "__main__":
    main()
