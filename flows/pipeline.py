"""The full pipeline: ingest, then (as later parts land) train, score and drift."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.ingest import ingest_flow


@flow(name="pipeline")
def pipeline_flow(data_dir: str | None = None) -> dict[str, Any]:
    """Run every stage in order on ``data_dir`` (default ``PASSOS_DATA_DIR``)."""
    ingested = ingest_flow(sources=[data_dir] if data_dir else None)
    return {"ingest": ingested}
