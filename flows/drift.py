"""The drift flow: the latest year and the online prediction log against each champion's training data."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.states import Completed

from features.featuresets import TASKS
from flows.refresh import refresh_analytics_task
from modeling.registry import Registry
from monitoring.drift import DriftCheck, Thresholds, check, fit_years, frame_from_log
from monitoring.evidently_adapter import write_report
from monitoring.report_index import scan_entries, write_index
from passos.settings import Settings, get_settings
from warehouse.connection import connect, replace_rows
from warehouse.predictions import load_prediction_log, prediction_inputs


@task(retries=2, retry_delay_seconds=2)
def load_log_task(settings: Settings) -> int:
    """Load new prediction-log lines into the warehouse (idempotent)."""
    with connect(settings) as con:
        return load_prediction_log(con, settings.predictions_dir).rows_loaded


@dataclass
class DriftFrames:
    """What one task's drift run compares: the reference and the current frames."""

    reference: pd.DataFrame
    year: pd.DataFrame
    log: pd.DataFrame
    latest: int
    reference_years: str


@task
def frames_task(
    settings: Settings, task_name: str, years: list[int], current_year: int | None, window_days: int | None
) -> DriftFrames:
    """Reference (champion's fit years, minus the current year) and the current frames."""
    with connect(settings, read_only=True) as con:
        table = f"features_{task_name}"
        latest = current_year or con.execute("select max(year) from students").fetchall()[0][0]
        reference_years = [y for y in years if y != latest] or years
        marks = ", ".join("?" * len(reference_years))
        reference = con.execute(f"select * from {table} where year in ({marks})", reference_years).df()
        current = con.execute(f"select * from {table} where year = ?", [latest]).df()
        logged = prediction_inputs(con, task_name, days=window_days)
    return DriftFrames(
        reference, current, frame_from_log(logged, task_name), latest, ",".join(map(str, reference_years))
    )


@task
def check_task(
    settings: Settings, model: Any, reference: pd.DataFrame, current: pd.DataFrame, task_name: str, recall: float | None
) -> DriftCheck:
    """Run the comparison (Evidently behind monitoring/evidently_adapter.py)."""
    thresholds = Thresholds(settings.drift_share_threshold, settings.drift_psi_threshold, settings.drift_recall_drop)
    return check(model, reference, current, task=task_name, thresholds=thresholds, champion_recall=recall)


@task(retries=2, retry_delay_seconds=2)
def record_task(settings: Settings, row: dict[str, Any]) -> None:
    """One row of ``drift_reports``."""
    with connect(settings) as con:
        replace_rows(con, "drift_reports", pd.DataFrame([row]))


@flow(name="drift")
def drift_flow(
    task: str = "all", year: int | None = None, window_days: int | None = 30, trigger_retrain: bool | None = None
) -> Any:
    """Compare the latest year (or ``year``) and the last ``window_days`` of predictions with each champion's
    training data; write reports, the index, and a verdict. ``trigger_retrain`` defaults to the setting."""
    settings = get_settings()
    logger = get_run_logger()
    registry = Registry.from_settings(settings)
    load_log_task(settings)
    rows: list[dict[str, Any]] = []
    for name in TASKS if task == "all" else (task,):
        version = registry.champion(name)
        if version is None:
            logger.warning("no %s champion: nothing to compare", name)
            continue
        model, metadata = registry.load_checked(name, version)
        frames = frames_task(settings, name, fit_years(metadata), year, window_days)
        recall = ((metadata.get("metrics") or {}).get("test") or {}).get("recall")
        comparisons = [("year", f"year {frames.latest}")]
        if len(frames.log) >= 30:
            comparisons.append(("log", f"prediction log, last {window_days} days" if window_days else "prediction log"))
        for key, label in comparisons:
            current = frames.year if key == "year" else frames.log
            if current.empty:
                continue
            outcome = check_task(settings, model, frames.reference, current, name, recall)
            run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{name}-{key}-{uuid.uuid4().hex[:6]}"
            directory = settings.reports_dir / "drift" / run_id
            created = datetime.now(UTC)
            write_report(
                outcome.result,
                directory,
                meta={
                    "run_id": run_id,
                    "created_at": created.isoformat(),
                    "task": name,
                    "verdict": outcome.verdict,
                    "score_psi": outcome.score_psi,
                    "model_version": version,
                    "reference": f"years {frames.reference_years}",
                    "current": label,
                    "reasons": outcome.reasons,
                },
            )
            perf = outcome.performance or {}
            row = {
                "run_id": run_id,
                "created_at": created.replace(tzinfo=None),
                "task": name,
                "model_version": version,
                "reference": f"years {frames.reference_years}",
                "current": label,
                "reference_rows": len(frames.reference),
                "current_rows": len(current),
                "share_drifted": outcome.result.share_drifted,
                "drifted_columns": json.dumps(outcome.result.drifted_columns),
                "score_psi": outcome.score_psi,
                "recall": perf.get("recall"),
                "precision": perf.get("precision"),
                "roc_auc": perf.get("roc_auc"),
                "verdict": outcome.verdict,
                "reasons": json.dumps(outcome.reasons),
                "report_path": str(directory / "report.html"),
            }
            record_task(settings, row)
            rows.append(row)
            logger.info("%s vs %s: %s %s", name, label, outcome.verdict, outcome.reasons)
    refresh_analytics_task(settings)
    index = write_index(settings.reports_dir, scan_entries(settings.reports_dir))
    create_markdown_artifact(key="drift-verdicts", markdown=_markdown(rows), description="Drift verdicts")
    create_link_artifact(key="drift-index", link=index.as_uri(), description="All drift reports")
    retrain = [r for r in rows if r["verdict"] == "retrain recommended"]
    summary = [{k: r[k] for k in ("run_id", "task", "current", "share_drifted", "score_psi", "verdict")} for r in rows]
    if retrain:
        trigger = settings.drift_trigger_retrain if trigger_retrain is None else trigger_retrain
        if trigger:
            from flows.train import train_flow

            logger.warning("drift: retraining %s", sorted({r["task"] for r in retrain}))
            train_flow(task="all")
        return Completed(
            message=f"retrain recommended for {sorted({r['task'] for r in retrain})}",
            name="RetrainRecommended",
            data=summary,
        )
    return summary


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| task | current | drifted share | score PSI | recall | verdict |", "|---|---|---|---|---|---|"]
    for r in rows:
        psi = "n/a" if r["score_psi"] is None else f"{r['score_psi']:.3f}"
        recall = "n/a" if r["recall"] is None else f"{r['recall']:.3f}"
        lines.append(f"| {r['task']} | {r['current']} | {r['share_drifted']:.0%} | {psi} | {recall} | {r['verdict']} |")
    return "\n".join(lines)
