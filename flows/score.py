"""Batch scoring: one year's students, scored by a task's champion, into ``risk_scores`` (and a CSV)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task

from flows.refresh import refresh_analytics_task
from flows.run_owner import record_process
from modeling.registry import Registry
from modeling.scoring import HIGH, score_frame
from passos.errors import ModelNotFoundError
from passos.safe_csv import write_csv
from passos.settings import Settings, get_settings
from warehouse import queries
from warehouse.connection import connect, replace_rows


@task
def read_year(settings: Settings, task_name: str, year: int | None) -> pd.DataFrame:
    """The task's feature rows of ``year`` (default: the latest year in the warehouse)."""
    with connect(settings, read_only=True) as con:
        if year is None:
            year = queries.latest_year(con)
        return queries.task_features_of_year(con, task_name, year)


@task
def score_task(settings: Settings, task_name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Score with the champion of ``task_name``."""
    registry = Registry.from_settings(settings)
    version = registry.champion(task_name)
    if version is None:
        raise ModelNotFoundError(f"no champion for task {task_name!r}: run `passos train` first")
    model, _ = registry.load_checked(task_name, version)
    return score_frame(model, version, frame, task=task_name)


@task(retries=2, retry_delay_seconds=2)
def write_scores(settings: Settings, scores: pd.DataFrame, out: str | None) -> int:
    """Replace the scored (year, task) rows of ``risk_scores`` in one transaction; optionally a CSV."""
    years = sorted({int(y) for y in scores["year"]})
    tasks = sorted(set(scores["task"]))
    with connect(settings) as con:
        replace_rows(
            con,
            "risk_scores",
            scores,
            delete_where=f"year in ({', '.join('?' * len(years))}) and task in ({', '.join('?' * len(tasks))})",
            params=[*years, *tasks],
        )
    if out:
        write_csv(scores, Path(out))
    return len(scores)


@flow(name="score", on_running=[record_process])
def score_flow(task: str = "current", year: int | None = None, out: str | None = None) -> dict[str, Any]:
    """Score one year's students (default the latest) with ``task``'s champion, ranked by risk."""
    settings = get_settings()
    frame: pd.DataFrame = read_year(settings, task, year)
    scores: pd.DataFrame = score_task(settings, task, frame)
    n = write_scores(settings, scores, out)
    refresh_analytics_task(settings)
    high = int((scores["risk_label"] == HIGH).sum())
    get_run_logger().info("scored %d students of %s for %s: %d high risk", n, year or "the latest year", task, high)
    latest = int(frame["year"].max()) if n else year
    return {"task": task, "year": latest, "scored": n, "high_risk": high, "out": out}
