"""Drift on the real data: the latest year against each champion's training years.

Usage: .venv/bin/python benchmarks/drift.py   (needs $PASSOS_HOME from `make pipeline`)
Measures the drift work itself per task, without the Prefect machinery: read the frames, the
calibrated check (PSI of every signal, the resampled null, Evidently's detail) and the report;
the latest year is judged as a new year (in_sample=False) so that the whole check runs. Then one
whole `drift_flow --force` run (which also starts Prefect's temporary API server when no server
is configured).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import machine, save
from modeling.registry import Registry
from monitoring.drift import Thresholds, champion_importance, check, fit_years
from monitoring.evidently_adapter import write_report
from passos.settings import get_settings
from warehouse.connection import connect


def main() -> None:
    settings = get_settings()
    registry = Registry.from_settings(settings)
    results: dict[str, object] = {"machine": machine()}
    thresholds = Thresholds(
        false_alarm_rate=settings.drift_false_alarm_rate,
        resamples=settings.drift_resamples,
        recall_drop=settings.drift_recall_drop,
        seed=settings.seed,
    )
    for task in ("current", "next_year"):
        version = registry.champion(task)
        if version is None:
            continue
        model, metadata = registry.load_checked(task, version)
        started = time.perf_counter()
        with connect(settings, read_only=True) as con:
            latest = con.execute("select max(year) from students").fetchall()[0][0]
            years = [y for y in fit_years(metadata) if y != latest] or fit_years(metadata)
            marks = ", ".join("?" * len(years))
            reference = con.execute(f"select * from features_{task} where year in ({marks})", years).df()
            current = con.execute(f"select * from features_{task} where year = ?", [latest]).df()
        outcome = check(
            model,
            reference,
            current,
            task=task,
            thresholds=thresholds,
            champion_recall=None,
            importance=champion_importance(model, metadata, task),
        )
        assert outcome.result is not None
        with tempfile.TemporaryDirectory() as folder:
            write_report(outcome.result, Path(folder))
        results[task] = {
            "seconds": round(time.perf_counter() - started, 3),
            "reference_rows": len(reference),
            "current_rows": len(current),
            "share_drifted": round(outcome.result.share_drifted, 3),
            "score_psi": outcome.score_psi,
            "verdict": outcome.verdict,
            "resamples": thresholds.resamples,
        }
    from flows.drift import drift_flow

    started = time.perf_counter()
    drift_flow(task="all", window_days=30, force=True, return_state=True)
    results["drift_flow_total_s"] = round(time.perf_counter() - started, 3)
    save("drift", results)


if __name__ == "__main__":
    main()
