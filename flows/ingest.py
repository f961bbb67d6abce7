"""The ingest flow: files → harmonised rows → warehouse, one atomic load per year, Parquet export."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows.refresh import refresh_analytics_task
from flows.run_owner import record_process
from passos.settings import Settings, get_settings
from warehouse import loader
from warehouse.connection import connect
from warehouse.sources import Limits, discover, source_files


@task(retries=2, retry_delay_seconds=1)
def list_sources_task(paths: list[str]) -> list[str]:
    """The input files under the given paths, plus the paths that do not exist (disk can fail: retried).

    Names only: the rows never pass between tasks (Prefect would hash and keep them), the load
    task reads the files itself.
    """
    files, missing = source_files([Path(p) for p in paths])
    return [str(f) for f in files] + [error.source for error in missing]


@task
def load_task(settings: Settings, run_id: str, sources: list[str]) -> list[dict[str, Any]]:
    """Read, harmonise and load each year; a bad table is reported and the others still load."""
    logger = get_run_logger()
    with connect(settings) as con:
        with loader.tracked_run(con, run_id, f"{len(sources)} source file(s)"):
            discovery = discover([Path(s) for s in sources], Limits.from_settings(settings))
            results = loader.ingest(con, run_id, discovery)
        loader.export_parquet(con, settings.parquet_dir)
    for r in results:
        logger.info(
            "%s: %s (year %s: read %d, loaded %d, quarantined %d, issues %d) %s",
            r.source,
            r.status,
            r.year,
            r.rows_read,
            r.rows_loaded,
            r.rows_quarantined,
            r.dq_issues,
            r.note,
        )
    return loader.summary(results)


@flow(name="ingest", on_running=[record_process], log_prints=False)
def ingest_flow(sources: list[str] | None = None) -> list[dict[str, Any]]:
    """Load PEDE files (folders of ``pede_YYYY.csv``, single CSVs, workbooks) into the warehouse.

    Args:
        sources: files or folders; default ``PASSOS_DATA_DIR`` (see README).
    """
    settings = get_settings()
    paths = [Path(s) for s in sources] if sources else [settings.resolved_data_dir()]
    run_id = uuid.uuid4().hex[:12]
    files = list_sources_task([str(p) for p in paths])
    summary = load_task(settings, run_id, files)
    refresh_analytics_task(settings)
    create_table_artifact(
        key="ingest-summary", table=summary, description=f"Ingest run {run_id} from {', '.join(map(str, paths))}"
    )
    return summary
