"""The full pipeline: ingest → train both tasks → score the latest year → drift report."""

from __future__ import annotations

from typing import Any, cast

from prefect import flow

from features.featuresets import TASKS
from flows.drift import drift_flow
from flows.ingest import ingest_flow
from flows.score import score_flow
from flows.train import train_flow
from modeling.registry import Registry
from passos.settings import get_settings


@flow(name="pipeline")
def pipeline_flow(data_dir: str | None = None, min_recall: float | None = None) -> dict[str, Any]:
    """Run every stage in order on ``data_dir`` (default ``PASSOS_DATA_DIR``)."""
    ingested = ingest_flow(sources=[data_dir] if data_dir else None)
    trained = cast("list[dict[str, Any]]", train_flow(task="all", min_recall=min_recall))
    registry = Registry.from_settings(get_settings())
    scored = [score_flow(task=name) for name in TASKS if registry.champion(name) is not None]
    drift = drift_flow(task="all")
    return {
        "ingest": [
            {k: r[k] for k in ("source", "year", "status", "rows_loaded", "rows_quarantined")} for r in ingested
        ],
        "train": [{k: r[k] for k in ("task", "version", "kind", "accepted", "reasons")} for r in trained],
        "score": scored,
        "drift": drift,
    }
