"""The ingest flow: files → harmonised rows → warehouse, one atomic load per year, Parquet export."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows.refresh import refresh_analytics_task
from passos.settings import Settings, get_settings
from warehouse import loader
from warehouse.connection import connect
from warehouse.sources import Discovery, discover


@task(retries=2, retry_delay_seconds=1)
def discover_task(paths: list[Path]) -> Discovery:
    """Read every PEDE table under the given paths (disk can fail: retried)."""
    return discover(paths)


@task
def load_task(settings: Settings, run_id: str, discovery: Discovery) -> list[dict[str, Any]]:
    """Harmonise and load each year; a bad table is reported and the others still load."""
    logger = get_run_logger()
    with connect(settings) as con:
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


@flow(name="ingest", log_prints=False)
def ingest_flow(sources: list[str] | None = None) -> list[dict[str, Any]]:
    """Load PEDE files (folders of ``pede_YYYY.csv``, single CSVs, workbooks) into the warehouse.

    Args:
        sources: files or folders; default ``PASSOS_DATA_DIR`` (see README).
    """
    settings = get_settings()
    paths = [Path(s) for s in sources] if sources else [settings.resolved_data_dir()]
    run_id = uuid.uuid4().hex[:12]
    discovery = discover_task(paths)
    summary = load_task(settings, run_id, discovery)
    refresh_analytics_task(settings)
    create_table_artifact(
        key="ingest-summary", table=summary, description=f"Ingest run {run_id} from {', '.join(map(str, paths))}"
    )
    return summary
