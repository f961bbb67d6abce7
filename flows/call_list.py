"""The call list flow step: export the warehouse view ``call_list`` under ``$PASSOS_HOME/reports``."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from passos.settings import Settings
from warehouse.call_list import read_call_list, write_call_list


@task
def call_list_task(settings: Settings) -> dict[str, Any]:
    """Write ``reports/call_list.csv`` and ``.xlsx``; the counts per category."""
    frame = read_call_list(settings)
    csv_path, xlsx_path = write_call_list(frame, settings.reports_dir / "call_list")
    counts = {str(k): int(v) for k, v in frame["category"].value_counts().items()}
    get_run_logger().info("call list: %s in %s and %s", counts, csv_path, xlsx_path)
    return {"csv": str(csv_path), "xlsx": str(xlsx_path), "students": counts}
