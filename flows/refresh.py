"""The last step of every flow that writes the warehouse: publish a new analysts' database."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from passos.settings import Settings
from warehouse.analytics import refresh_analytics


@task(retries=2, retry_delay_seconds=2)
def refresh_analytics_task(settings: Settings) -> dict[str, Any]:
    """Rebuild ``features`` and swap in a new ``analytics.duckdb`` (retried: the warehouse may be busy)."""
    result = refresh_analytics(settings)
    get_run_logger().info(
        "analysts' database %s refreshed: %d rows in %d tables (%.2f s)",
        result.path,
        sum(result.tables.values()),
        len(result.tables),
        result.seconds,
    )
    return {"path": str(result.path), "tables": result.tables, "seconds": round(result.seconds, 3)}
