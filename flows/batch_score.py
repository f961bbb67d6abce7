"""The batch-score flow: a Parquet file (or a warehouse year) scored in partitions by a task's champion.

The partitions run as Prefect tasks on local threads or, with ``PASSOS_DASK_ADDRESS`` set, on
that Dask cluster through prefect-dask (the workers then need the input, the output folder and
the model registry on a shared path). What a partition is and how it is scored, staged and
published: ``modeling/batch.py``.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from features.featuresets import TASKS
from flows.run_owner import record_process
from modeling.batch import (
    Partition,
    check_columns,
    finish,
    parquet_files,
    plan_partitions,
    score_partition,
    staging_folder,
)
from modeling.registry import Registry
from passos.errors import ModelNotFoundError, SourceError
from passos.settings import Settings, get_settings
from warehouse import queries
from warehouse.connection import connect

score_partition_task = task(
    name="score-partition",
    task_run_name="score-partition-{partition.index}",
    retries=1,
    retry_delay_seconds=2,
    cache_policy=NO_CACHE,
)(score_partition)


@task
def export_year(settings: Settings, task_name: str, year: int | None, target: Path, row_group_rows: int) -> int:
    """Copy one year of ``features_<task>`` (default: the latest) from the warehouse to a Parquet file."""
    with connect(settings, read_only=True) as con:
        if year is None:
            year = queries.latest_year(con)
            if year is None:
                raise SourceError(
                    str(settings.warehouse_path), "no students in the warehouse: run `passos ingest` first"
                )
        target.parent.mkdir(parents=True, exist_ok=True)
        queries.export_task_year(con, task_name, year, target, row_group_rows=row_group_rows)
    return int(year)


def task_runner(settings: Settings, dask_address: str | None = None) -> TaskRunner:
    """prefect-dask's runner on the cluster at ``dask_address`` (default the setting), else local threads."""
    address = dask_address or settings.dask_address
    if address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=address)
    return ThreadPoolTaskRunner(max_workers=settings.batch_workers or os.cpu_count() or 1)


@flow(name="batch-score", on_running=[record_process])
def batch_score_flow(
    task: str = "current",
    source: str | None = None,
    year: int | None = None,
    out: str | None = None,
    reasons: bool = False,
    partition_rows: int | None = None,
    dask_address: str | None = None,
) -> dict[str, Any]:
    """Score a Parquet file or folder (default: one warehouse year) with ``task``'s champion into Parquet.

    Args:
        task: ``current`` or ``next_year``.
        source: a Parquet file or folder with ``ra``, ``year`` and the task's features; default
            ``features_<task>`` of ``year`` exported from the warehouse.
        year: the warehouse year when ``source`` is not given (default: the latest).
        out: the output folder (default ``$PASSOS_HOME/batch_scores/<task>-<UTC time>``); an
            earlier batch-score output there is replaced.
        reasons: add the top reasons per row (much slower for LightGBM).
        partition_rows: rows per partition (default ``PASSOS_BATCH_PARTITION_ROWS``).
        dask_address: a Dask scheduler to run the partitions on (default ``PASSOS_DASK_ADDRESS``).

    Returns:
        ``task, model_version, source, out, rows, partitions, high_risk, seconds, rows_per_s``.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    settings = get_settings()
    started = datetime.now(UTC)
    version = Registry.from_settings(settings).champion(task)
    if version is None:
        raise ModelNotFoundError(f"no champion for task {task!r}: run `passos train` first")
    rows_per_part = partition_rows or settings.batch_partition_rows
    out_dir, staging = staging_folder(settings, task, out, started)
    try:
        source_path, described = batch_input(settings, task, source, year, staging / "_input", rows_per_part)
        files = parquet_files(source_path)
        check_columns(files, task)
        partitions = plan_partitions(files, partition_rows=rows_per_part)
        common: dict[str, Any] = {"models_dir": str(settings.models_dir), "task_name": task, "version": version}
        common |= {"out_dir": str(staging), "scored_at": started, "reasons": reasons}
        done = score_partitions(settings, partitions, common, dask_address)
        summary = finish(
            staging,
            out_dir,
            source=described,
            task_name=task,
            version=version,
            rows=done,
            partitions=len(partitions),
            started=started,
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    get_run_logger().info(
        "scored %d rows (%d high risk) into %s in %.1f s", done, summary["high_risk"], out_dir, summary["seconds"]
    )
    return summary


def batch_input(
    settings: Settings, task_name: str, source: str | None, year: int | None, staging: Path, rows_per_part: int
) -> tuple[Path, str]:
    """The Parquet input and how the summary names it: ``source``, else a warehouse year exported to staging."""
    if source is not None:
        return Path(source), str(Path(source))
    exported = staging / f"features_{task_name}.parquet"
    year = export_year(settings, task_name, year, exported, rows_per_part)
    return exported, f"warehouse features_{task_name}, year {year}"


def score_partitions(
    settings: Settings, partitions: list[Partition], common: dict[str, Any], dask_address: str | None
) -> int:
    """Score every partition on the task runner, logging the progress; the number of rows scored."""
    run_logger = get_run_logger()
    total = sum(p.rows for p in partitions)
    run_logger.info(
        "scoring %d rows in %d partitions with %s/%s", total, len(partitions), common["task_name"], common["version"]
    )
    done = 0
    with task_runner(settings, dask_address) as runner:
        futures: list[PrefectFuture[int]] = [
            runner.submit(score_partition_task, {"partition": p, **common}) for p in partitions
        ]
        for future in as_completed(futures):
            done += future.result()
            run_logger.info("scored %d / %d rows (%.0f%%)", done, total, 100 * done / max(total, 1))
    return done
