"""The drift flow: a year or predictions the champion has not seen, against its training data.

It speaks only when something is new: a comparison whose data is the same as at the last check
(same champion, same rows; fewer than ``PASSOS_DRIFT_MIN_LOG_ROWS`` new predictions) is skipped,
and a year the champion was fitted on is "no new data since training". A run that recommends
retraining ends in the FAILED-type state ``RetrainRecommended``.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.states import Completed, Failed

from features.featuresets import TASKS
from flows.refresh import refresh_analytics_task
from flows.run_logs import project_logs
from flows.train import TaskChoice
from modeling.registry import Registry
from monitoring.drift import (
    NO_NEW_DATA,
    RETRAIN,
    SEVERITY,
    DriftCheck,
    Thresholds,
    champion_importance,
    check,
    fit_years,
    frame_from_log,
)
from monitoring.evidently_adapter import write_report
from monitoring.outcomes import summarise
from monitoring.report_index import last_fingerprints, prune, scan_entries, write_index
from monitoring.report_page import card_link, render_page
from passos.errors import PassosError
from passos.settings import Settings, get_settings
from serving.prediction_retention import apply_retention
from warehouse.connection import connect, replace_rows
from warehouse.predictions import load_prediction_log, prediction_inputs

MIN_LOG_ROWS_TO_COMPARE = 30  # fewer rows than this cannot say anything about a distribution


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


@dataclass
class DriftFrames:
    """What one task's drift run compares, and the outcomes of earlier warnings."""

    reference: pd.DataFrame
    year: pd.DataFrame
    log: pd.DataFrame
    latest: int
    reference_years: str
    log_rows_total: int
    outcomes: pd.DataFrame
    labelled_years: list[int]


@task
def frames_task(
    settings: Settings, task_name: str, years: list[int], current_year: int | None, window_days: int | None
) -> DriftFrames:
    """Reference (the champion's fit years), the current year, the prediction log, and outcomes."""
    with connect(settings, read_only=True) as con:
        table = f"features_{task_name}"
        latest = current_year or con.execute("select max(year) from students").fetchall()[0][0]
        marks = ", ".join("?" * len(years))
        reference = con.execute(f"select * from {table} where year in ({marks})", years).df()
        current = con.execute(f"select * from {table} where year = ?", [latest]).df()
        logged = prediction_inputs(con, task_name, days=window_days)
        total = con.execute("select count(*) from predictions where task = ?", [task_name]).fetchall()[0][0]
        outcomes = con.execute("select * from outcomes where task = ?", [task_name]).df()
        labelled = con.execute(f"select distinct year from {table} where target is not null").fetchall()
    return DriftFrames(
        reference,
        current,
        frame_from_log(logged, task_name),
        int(latest),
        ",".join(map(str, years)),
        int(total),
        outcomes,
        sorted(int(row[0]) for row in labelled),
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


def _rows_sha(frame: pd.DataFrame) -> str:
    """A fingerprint of the rows, whatever order the view returned them in."""
    keys = [column for column in ("ra", "year") if column in frame.columns]
    ordered = frame.sort_values(keys) if keys else frame
    hashed = pd.util.hash_pandas_object(ordered.sort_index(axis=1), index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def _is_new(fingerprint: dict[str, Any], previous: dict[str, Any] | None, min_log_rows: int) -> bool:
    if previous is None or previous.get("model_version") != fingerprint["model_version"]:
        return True
    if fingerprint["comparison"] == "log":
        return int(fingerprint["log_rows_total"]) - int(previous.get("log_rows_total") or 0) >= min_log_rows
    return previous.get("rows_sha") != fingerprint["rows_sha"]


def _fit_years_by_version(registry: Registry, task_name: str, versions: list[str]) -> dict[str, list[int]]:
    found = {}
    for version in versions:
        try:
            found[version] = fit_years(registry.metadata(task_name, version))
        except (PassosError, OSError, ValueError):
            continue  # a version no longer in the registry: its figures are marked "unknown"
    return found


@flow(name="drift")
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
    registry = Registry.from_settings(settings)
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    with project_logs():
        load_log_task(settings)
        previous = last_fingerprints(settings.reports_dir)
        for name in TASKS if task == "all" else (task,):
            version = registry.champion(name)
            if version is None:
                logger.warning("no %s champion: nothing to compare", name)
                continue
            model, metadata = registry.load_checked(name, version)
            years = fit_years(metadata)
            frames = frames_task(settings, name, years, year, window_days)
            recall = ((metadata.get("metrics") or {}).get("test") or {}).get("recall")
            importance = champion_importance(model, metadata, name)
            comparisons = [("year", f"year {frames.latest}", frames.year, frames.latest in years)]
            if len(frames.log) >= MIN_LOG_ROWS_TO_COMPARE:
                window = f", last {window_days} days" if window_days else ""
                comparisons.append(("log", f"prediction log{window}", frames.log, False))
            fit_by_version = _fit_years_by_version(registry, name, sorted(set(frames.outcomes["model_version"])))
            outcomes = [item.as_dict() for item in summarise(frames.outcomes, fit_by_version)]
            for key, label, current, in_sample in comparisons:
                if current.empty:
                    logger.info("%s: %s has no rows: nothing to check", name, label)
                    continue
                fingerprint = {
                    "comparison": key,
                    "model_version": version,
                    "current": label,
                    "rows": len(current),
                    "rows_sha": _rows_sha(current),
                    "log_rows_total": frames.log_rows_total,
                }
                if not force and not _is_new(fingerprint, previous.get((name, key)), settings.drift_min_log_rows):
                    last = previous[(name, key)]["run_id"]
                    logger.info("%s: %s is unchanged since the check %s: skipped", name, label, last)
                    skipped.append(f"{name} {label} (unchanged since {last})")
                    continue
                new_labels = bool(set(frames.labelled_years) - set(years))
                outcome = check_task(settings, model, frames, current, name, recall, importance, in_sample, new_labels)
                rows.append(
                    _report(settings, registry, name, version, label, frames, current, outcome, outcomes, fingerprint)
                )
                logger.info("%s vs %s: %s: %s", name, label, outcome.verdict, "; ".join(outcome.reasons))
        removed = prune(
            settings.reports_dir, retention_days=settings.drift_retention_days, keep=settings.drift_keep_reports
        )
        if removed:
            logger.info("pruned %d old drift reports", len(removed))
        refresh_analytics_task(settings)
        index = write_index(settings.reports_dir, scan_entries(settings.reports_dir))
    create_markdown_artifact(
        key="drift-verdicts", markdown=_markdown(rows, skipped), description="Drift verdicts and their reasons"
    )
    create_link_artifact(key="drift-index", link=index.as_uri(), description="All drift reports")
    summary = [
        {k: r[k] for k in ("run_id", "task", "current", "score_psi", "weighted_psi", "verdict", "reasons")}
        for r in rows
    ]
    retrain = sorted({r["task"] for r in rows if r["verdict"] == RETRAIN})
    if retrain:
        trigger = settings.drift_trigger_retrain if trigger_retrain is None else trigger_retrain
        if trigger:
            from flows.train import train_flow

            logger.warning("drift: retraining %s", retrain)
            for name in retrain:
                train_flow(task=name, return_state=True)  # its own state and artifact say how it went
        reasons = "; ".join(f"{r['task']} ({r['current']}): {r['reasons'][0]}" for r in rows if r["verdict"] == RETRAIN)
        # FAILED-type on purpose: an alarm must not be painted green nor counted as completed.
        return Failed(message=f"retrain recommended for {retrain}: {reasons}", name="RetrainRecommended", data=summary)
    worst = max((r["verdict"] for r in rows), key=lambda v: SEVERITY.get(v, 0), default=None)
    if not rows:
        return Completed(message="nothing new since the last check: " + "; ".join(skipped), name="NothingNew", data=[])
    return Completed(message=f"worst verdict: {worst}", data=summary)


def _report(
    settings: Settings,
    registry: Registry,
    name: str,
    version: str,
    label: str,
    frames: DriftFrames,
    current: pd.DataFrame,
    outcome: DriftCheck,
    outcomes: list[dict[str, Any]],
    fingerprint: dict[str, Any],
) -> dict[str, Any]:
    """Write one report (page, JSON, warehouse row) and return its row."""
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{name}-{fingerprint['comparison']}-{uuid.uuid4().hex[:6]}"
    directory = settings.reports_dir / "drift" / run_id
    created = datetime.now(UTC)
    card = registry.path(name, version) / "card.md"
    meta = {
        "run_id": run_id,
        "created_at": created.isoformat(),
        "task": name,
        "verdict": outcome.verdict,
        "reasons": outcome.reasons,
        "score_psi": outcome.score_psi,
        "weighted_psi": outcome.weighted_psi,
        "model_version": version,
        "reference": f"years {frames.reference_years} (the champion's training data)",
        "current": label,
        "card_path": card.relative_to(settings.home).as_posix(),  # a served page names no path of the machine
        "card_link": card_link(name, version),
        "check": outcome.as_dict(),
        "outcomes": outcomes,
        "fingerprint": fingerprint,
        "legend": {
            "psi": "0 = identical; higher = more drift (below 0.1 no real shift, 0.1-0.2 moderate, >= 0.2 significant)",
            "check.signals[].threshold": "calibrated: a signal above it (and >= 0.1) is an alarm",
            "summary.column_scores": "Evidently's: p-values (K-S, chi-square; lower = more drift) or distances "
            "(Wasserstein, Jensen-Shannon; higher = more drift); see summary.column_tests. Detail only.",
        },
    }
    result = outcome.result
    page = render_page(meta, None if result is None else result.html)
    if result is not None:
        result.html = page
        write_report(result, directory, meta=meta)
    else:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "report.html").write_text(page, encoding="utf-8")
        (directory / "report.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    performance = outcome.performance or {}
    row = {
        "run_id": run_id,
        "created_at": created.replace(tzinfo=None),
        "task": name,
        "model_version": version,
        "reference": f"years {frames.reference_years}",
        "current": label,
        "reference_rows": len(frames.reference),
        "current_rows": len(current),
        "share_drifted": None if result is None else result.share_drifted,
        "drifted_columns": json.dumps(outcome.moved),
        "score_psi": outcome.score_psi,
        "recall": performance.get("recall"),
        "precision": performance.get("precision"),
        "roc_auc": None,
        "verdict": outcome.verdict,
        "reasons": json.dumps(outcome.reasons),
        "report_path": str(directory / "report.html"),
    }
    record_task(settings, row)
    return row | {"weighted_psi": outcome.weighted_psi, "reasons": outcome.reasons}


def _markdown(rows: list[dict[str, Any]], skipped: list[str]) -> str:
    lines = ["| task | checked | verdict | score PSI | weighted PSI | reasons |", "|---|---|---|---|---|---|"]
    for r in rows:
        psi = "n/a" if r["score_psi"] is None else f"{r['score_psi']:.3f}"
        weighted = "n/a" if r["weighted_psi"] is None else f"{r['weighted_psi']:.3f}"
        verdict = f"**{r['verdict']}**" if r["verdict"] == RETRAIN else r["verdict"]
        reasons = "; ".join(r["reasons"]).replace("|", "/")
        lines.append(f"| {r['task']} | {r['current']} | {verdict} | {psi} | {weighted} | {reasons} |")
    if skipped:
        lines.append("")
        lines.append("Skipped, nothing new: " + "; ".join(skipped))
    if not rows and not skipped:
        lines.append("| — | — | no champion | | | |")
    return "\n".join(lines)


__all__ = ["NO_NEW_DATA", "drift_flow"]
