"""The full pipeline: ingest → train both tasks → score the latest year → drift report."""

from __future__ import annotations

from typing import Any, cast

from prefect import flow
from prefect.states import Failed, State

from features.featuresets import TASKS
from flows.call_list import call_list_task
from flows.drift import drift_flow
from flows.ingest import ingest_flow
from flows.run_owner import record_process
from flows.score import score_flow
from flows.train import train_flow
from modeling.registry import Registry
from passos.settings import get_settings


def _result(state: State[Any]) -> Any:
    """A subflow's result; a verdict state (Rejected, RetrainRecommended) still carries its data."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    return result


@flow(name="pipeline", on_running=[record_process])
def pipeline_flow(data_dir: str | None = None) -> Any:
    """Run every stage in order on ``data_dir`` (default ``PASSOS_DATA_DIR``).

    The gate's floors are the per-task settings. A rejection or a drift alarm does not stop the
    later stages (the champion still serves), but the pipeline then ends in the same
    FAILED-type state (``Rejected`` first, else ``RetrainRecommended``) so that it is seen.
    """
    ingested = ingest_flow(sources=[data_dir] if data_dir else None)
    trained_state = cast("State[Any]", train_flow(task="all", return_state=True))
    trained = _result(trained_state)
    registry = Registry.from_settings(get_settings())
    scored = [score_flow(task=name) for name in TASKS if registry.champion(name) is not None]
    call_list = call_list_task(get_settings()) if registry.champion("next_year") is not None else None
    drift_state = cast("State[Any]", drift_flow(task="all", return_state=True))
    summary = {
        "ingest": [
            {k: r[k] for k in ("source", "year", "status", "rows_loaded", "rows_quarantined")} for r in ingested
        ],
        "train": [
            {k: r.get(k) for k in ("task", "version", "kind", "accepted", "held", "reasons")}
            | {k: r.get(k) for k in ("test_recall", "test_precision", "test_roc_auc")}
            for r in trained
        ],
        "score": scored,
        "call_list": call_list,
        "drift": _result(drift_state),
    }
    for state in (trained_state, drift_state):
        if state.is_failed():
            return Failed(message=state.message, name=state.name, data=summary)
    return summary
