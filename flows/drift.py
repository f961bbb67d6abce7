"""The drift flow: a year or predictions the champion has not seen, against its training data.

It speaks only when something is new: a comparison whose data is the same as at the last check
(same champion, same rows; fewer than ``PASSOS_DRIFT_MIN_LOG_ROWS`` new predictions) is skipped,
and a year the champion was fitted on is "no new data since training". A run that recommends
retraining ends in the FAILED-type state ``RetrainRecommended``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.states import Completed, Failed

from features.featuresets import TASKS
from flows.refresh import refresh_analytics_task
from flows.run_logs import project_logs
from flows.run_owner import record_process
from flows.train import TaskChoice
from modeling.registry import Registry
from modeling.release import fit_years
from monitoring.drift import NO_NEW_DATA, DriftCheck, Thresholds, champion_importance, check, frame_from_log
from monitoring.drift_report import (
    DriftFrames,
    champion_recall,
    comparisons,
    fingerprint,
    fit_years_by_version,
    is_new,
    retrain_reasons,
    retrain_tasks,
    run_summary,
    verdict_row,
    verdicts_markdown,
    worst_verdict,
    write_drift_report,
)
from monitoring.outcomes import summarise
from monitoring.report_index import last_fingerprints, prune, scan_entries, write_index
from passos.errors import SourceError
from passos.settings import Settings, get_settings
from serving.prediction_retention import apply_retention
from warehouse import queries
from warehouse.connection import connect, replace_rows
from warehouse.predictions import load_prediction_log, prediction_inputs


@task(retries=2, retry_delay_seconds=2)
def load_log_task(settings: Settings) -> int:
    """Load new prediction-log lines into the warehouse (idempotent), then apply the log's retention.

    Retention runs after the load is committed: it deletes the files this load read in full and
    no writer will append to again, then holds the folder under ``predictions_max_bytes``.
    """
    with connect(settings) as con:
        loaded = load_prediction_log(con, settings.predictions_dir)
    apply_retention(
        settings.predictions_dir,
        loaded.read_bytes,
        rotate_seconds=settings.predictions_rotate_seconds,
        max_bytes=settings.predictions_max_bytes,
    )
    return loaded.rows_loaded


@task
def frames_task(
    settings: Settings, task_name: str, years: list[int], current_year: int | None, window_days: int | None
) -> DriftFrames:
    """Reference (the champion's fit years), the current year, the prediction log, and outcomes."""
    with connect(settings, read_only=True) as con:
        latest = current_year or queries.latest_year(con)
        if latest is None:
            raise SourceError(str(settings.warehouse_path), "no students in the warehouse: run `passos ingest` first")
        reference = queries.task_features_of_years(con, task_name, years)
        current = queries.task_features_of_year(con, task_name, latest)
        logged = prediction_inputs(con, task_name, days=window_days)
        total = queries.prediction_count(con, task_name)
        outcomes = queries.task_outcomes(con, task_name)
        labelled = queries.labelled_years(con, task_name)
    return DriftFrames(
        reference,
        current,
        frame_from_log(logged, task_name),
        int(latest),
        ",".join(map(str, years)),
        int(total),
        outcomes,
        labelled,
    )


@task
def check_task(
    settings: Settings,
    model: Any,
    frames: DriftFrames,
    current: pd.DataFrame,
    task_name: str,
    recall: float | None,
    importance: dict[str, float],
    in_sample: bool,
    new_labels: bool,
) -> DriftCheck:
    """Judge one comparison (thresholds calibrated on the reference; Evidently for the detail)."""
    thresholds = Thresholds(
        false_alarm_rate=settings.drift_false_alarm_rate,
        resamples=settings.drift_resamples,
        recall_drop=settings.drift_recall_drop,
        seed=settings.seed,
    )
    return check(
        model,
        frames.reference,
        current,
        task=task_name,
        thresholds=thresholds,
        champion_recall=recall,
        importance=importance,
        in_sample=in_sample,
        new_labels=new_labels,
    )


@task(retries=2, retry_delay_seconds=2)
def record_task(settings: Settings, row: dict[str, Any]) -> None:
    """One row of ``drift_reports``."""
    with connect(settings) as con:
        replace_rows(con, "drift_reports", pd.DataFrame([row]))


@flow(name="drift", on_running=[record_process])
def drift_flow(
    task: TaskChoice = "all",
    year: int | None = None,
    window_days: int | None = 30,
    trigger_retrain: bool | None = None,
    force: bool = False,
) -> Any:
    """Judge the latest year (or ``year``) and the last ``window_days`` of predictions against each champion.

    Args:
        task: ``current``, ``next_year`` or ``all``.
        year: The year to check (default: the latest in the warehouse).
        window_days: Days of the prediction log to check (None: all).
        trigger_retrain: Run the training flow on ``retrain recommended`` (default: the setting).
        force: Check even when nothing is new since the last check.
    """
    settings = get_settings()
    logger = get_run_logger()
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    with project_logs():
        load_log_task(settings)
        previous = last_fingerprints(settings.reports_dir)
        for name in TASKS if task == "all" else (task,):
            checked, unchanged = check_champion(settings, name, year, window_days, previous, force=force)
            rows += checked
            skipped += unchanged
        removed = prune(
            settings.reports_dir, retention_days=settings.drift_retention_days, keep=settings.drift_keep_reports
        )
        if removed:
            logger.info("pruned %d old drift reports", len(removed))
        refresh_analytics_task(settings)
        index = write_index(settings.reports_dir, scan_entries(settings.reports_dir))
    create_markdown_artifact(
        key="drift-verdicts", markdown=verdicts_markdown(rows, skipped), description="Drift verdicts and their reasons"
    )
    create_link_artifact(key="drift-index", link=index.as_uri(), description="All drift reports")
    return final_state(settings, rows, skipped, trigger_retrain)


def check_champion(
    settings: Settings,
    name: str,
    year: int | None,
    window_days: int | None,
    previous: dict[tuple[str, str], dict[str, Any]],
    *,
    force: bool,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Check one task's champion against each comparison with something new; its reports and the skipped."""
    logger = get_run_logger()
    registry = Registry.from_settings(settings)
    version = registry.champion(name)
    if version is None:
        logger.warning("no %s champion: nothing to compare", name)
        return [], []
    model, metadata = registry.load_checked(name, version)
    years = fit_years(metadata)
    frames = frames_task(settings, name, years, year, window_days)
    importance = champion_importance(model, metadata, name)
    fit_by_version = fit_years_by_version(registry, name, sorted(set(frames.outcomes["model_version"])))
    outcomes = [item.as_dict() for item in summarise(frames.outcomes, fit_by_version)]
    new_labels = bool(set(frames.labelled_years) - set(years))
    rows, skipped = [], []
    for key, label, current, in_sample in comparisons(frames, years, window_days):
        if current.empty:
            logger.info("%s: %s has no rows: nothing to check", name, label)
            continue
        seen = fingerprint(key, version, label, current, frames.log_rows_total)
        if not force and not is_new(seen, previous.get((name, key)), settings.drift_min_log_rows):
            last = previous[(name, key)]["run_id"]
            logger.info("%s: %s is unchanged since the check %s: skipped", name, label, last)
            skipped.append(f"{name} {label} (unchanged since {last})")
            continue
        outcome = check_task(
            settings, model, frames, current, name, champion_recall(metadata), importance, in_sample, new_labels
        )
        row = write_drift_report(settings, registry, name, version, label, frames, current, outcome, outcomes, seen)
        record_task(settings, row)
        rows.append(verdict_row(row, outcome))
        logger.info("%s vs %s: %s: %s", name, label, outcome.verdict, "; ".join(outcome.reasons))
    return rows, skipped


def final_state(
    settings: Settings, rows: list[dict[str, Any]], skipped: list[str], trigger_retrain: bool | None
) -> Any:
    """The run's end: ``RetrainRecommended`` (FAILED-type, after retraining when asked), else Completed."""
    summary = run_summary(rows)
    retrain = retrain_tasks(rows)
    if retrain:
        trigger = settings.drift_trigger_retrain if trigger_retrain is None else trigger_retrain
        if trigger:
            from flows.train import train_flow

            get_run_logger().warning("drift: retraining %s", retrain)
            for name in retrain:
                train_flow(task=name, return_state=True)  # its own state and artifact say how it went
        # FAILED-type on purpose: an alarm must not be painted green nor counted as completed.
        message = f"retrain recommended for {retrain}: {retrain_reasons(rows)}"
        return Failed(message=message, name="RetrainRecommended", data=summary)
    if not rows:
        return Completed(message="nothing new since the last check: " + "; ".join(skipped), name="NothingNew", data=[])
    return Completed(message=f"worst verdict: {worst_verdict(rows)}", data=summary)


__all__ = ["NO_NEW_DATA", "drift_flow"]
