"""The model commands: train, retrain on the server, score, batch-score, and the registry (``passos models``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from cli.base import (
    ExitCode,
    TaskName,
    TaskOrAll,
    exit_for_state,
    fail,
    fmt,
    open_registry,
    print_rows,
    require_champion,
    require_warehouse,
    start_flows,
)
from passos.errors import WarehouseBusyError

if TYPE_CHECKING:
    from prefect.states import State


def train(
    task: Annotated[TaskOrAll, typer.Option(help="The task to train, or all.")] = TaskOrAll.all,
) -> None:
    """Train, evaluate out of time, gate and register a model per task (a Prefect flow).

    The gate's recall floor per task: PASSOS_GATE_MIN_RECALL_CURRENT / _NEXT_YEAR.

    Exit 10: the gate rejected a candidate (the champion is unchanged).

    Exit 12: a candidate passed but is held for review (`passos models promote` if a person agrees).
    """
    require_warehouse()
    start_flows(
        f"train {task.value}: starting the flow (a temporary Prefect server starts first unless PREFECT_API_URL is set)"
    )
    from flows.train import train_flow

    state = cast("State[Any]", train_flow(task=task.value, return_state=True))
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    for row in cast("list[dict[str, Any]]", result):
        verdict = "ACCEPTED" if row["accepted"] else "REJECTED"
        if row.get("held"):
            verdict = "ACCEPTED, HELD FOR REVIEW"
        typer.echo(
            f"{row['task']}: {row['version']} ({row['kind']}, {row['protocol']}) {verdict}"
            f" recall={fmt(row['test_recall'])} precision={fmt(row['test_precision'])}"
            f" roc_auc={fmt(row['test_roc_auc'])} champion={row['champion']}"
        )
        for reason in row["reasons"]:
            typer.echo(f"  - {reason}")
    exit_for_state(state)


def retrain(
    task: Annotated[TaskOrAll, typer.Option(help="The task to retrain, or all.")] = TaskOrAll.all,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the run to its end and exit with its verdict.")] = False,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds --wait follows the run.")] = 3600,
) -> None:
    """Run the retrain-weekly deployment now on the running Prefect server (`make prefect`).

    The server is PREFECT_API_URL (default http://127.0.0.1:4200/api, where `make prefect` serves).

    Exit 5: no Prefect server answers there, or it serves no retrain deployment.

    With --wait, the run's verdict: exit 10 (rejected), 12 (held for review), 6 (failed or crashed).
    """
    from deployments.trigger import RETRAIN, PrefectServerUnavailable, probe, start_run, wait_for
    from passos.settings import get_settings

    api_url = get_settings().prefect_api_url
    try:
        probe(api_url)
        started = start_run(api_url, RETRAIN, {"task": task.value})
    except PrefectServerUnavailable as error:
        raise fail(error, ExitCode.NO_PREFECT_SERVER) from None
    typer.echo(f"retrain {task.value}: flow run {started.name} created on {api_url}")
    typer.echo(f"  follow it: {started.url}")
    if not wait:
        typer.echo("  the serve process (`make prefect`) or a worker runs it; `passos retrain --wait` follows it here")
        return
    finished = wait_for(api_url, started.id, timeout_s=timeout)
    if finished is None:
        raise fail(f"{started.name} did not end within {timeout:.0f} s; it goes on: {started.url}", ExitCode.RUN_FAILED)
    typer.echo(f"{started.name}: {finished.name}" + (f": {finished.message}" if finished.message else ""))
    verdicts = {"Rejected": ExitCode.GATE_REJECTED, "HeldForReview": ExitCode.HELD_FOR_REVIEW}
    if finished.type == "COMPLETED":
        return
    raise typer.Exit(int(verdicts.get(finished.name, ExitCode.RUN_FAILED)))


def score(
    task: Annotated[TaskName, typer.Option(help="The task whose champion scores.")] = TaskName.current,
    year: Annotated[int | None, typer.Option(help="Year to score (default: the latest).")] = None,
    out: Annotated[Path | None, typer.Option(dir_okay=False, help="Also write the ranked scores to this CSV.")] = None,
) -> None:
    """Score one year's students with the task's champion into the `risk_scores` table."""
    require_warehouse()
    require_champion(task)
    start_flows(f"score {task.value}: starting the flow")
    from flows.score import score_flow

    result = score_flow(task=task.value, year=year, out=str(out) if out else None)
    typer.echo(json.dumps(result))


def models_list(task: Annotated[TaskName | None, typer.Option(help="Only this task.")] = None) -> None:
    """Every registered version, newest first, with its gate verdict and test figures."""
    rows = []
    for item in open_registry().list_versions(task.value if task else None):
        metrics = item.get("metrics") or {}
        rows.append(
            {
                "task": item["task"],
                "version": item["version"],
                "kind": item.get("kind"),
                "accepted": item.get("accepted"),
                "champion": "*" if item.get("is_champion") else "",
                "recall": fmt(metrics.get("recall")),
                "precision": fmt(metrics.get("precision")),
                "roc_auc": fmt(metrics.get("roc_auc")),
                "created_at": item.get("created_at"),
            }
        )
    print_rows(
        rows, ["task", "version", "kind", "accepted", "champion", "recall", "precision", "roc_auc", "created_at"]
    )


def models_show(version: Annotated[str, typer.Argument(help="A version id.")]) -> None:
    """A version's metadata (JSON) and where its model card is."""
    registry = open_registry()
    task = registry.find(version)
    typer.echo(json.dumps(registry.metadata(task, version), indent=2, default=str))
    typer.echo(f"model card: {registry.path(task, version) / 'card.md'}")


def models_promote(
    version: Annotated[str, typer.Argument(help="A version the gate accepted.")],
    reason: Annotated[str, typer.Option(help="Why, for the record.")] = "promoted by hand",
) -> None:
    """Make an accepted version its task's champion (the API follows within seconds)."""
    registry = open_registry()
    task = registry.find(version)
    registry.promote(task, version, reason=reason)
    _sync_mirror_after_pointer_change()
    typer.echo(f"{task}: champion is now {version}")


def models_rollback(
    task: Annotated[TaskName, typer.Option(help="The task to roll back.")] = TaskName.current,
) -> None:
    """Make the previous champion of a task the champion again."""
    version = open_registry().rollback(task.value)
    _sync_mirror_after_pointer_change()
    typer.echo(f"{task.value}: champion is now {version}")


# A promotion is done once its pointer is switched: the warehouse's copy may lag, never block it.
PROMOTE_LOCK_RETRIES = 1


def _sync_mirror_after_pointer_change() -> None:
    from modeling.registry_mirror import sync_mirror
    from passos.settings import get_settings
    from warehouse.analytics import refresh_analytics

    try:
        sync_mirror(get_settings(), lock_retries=PROMOTE_LOCK_RETRIES)
    except WarehouseBusyError:
        typer.secho(
            "warning: the warehouse is busy (another process writes to it), so its copy of the registry "
            "(model_registry) still shows the old champion; the API already follows the new one. It is "
            "rebuilt by the next training run or `passos models sync`.",
            fg="yellow",
            err=True,
        )
        return
    refresh_analytics(get_settings())


def models_sync() -> None:
    """Rebuild the warehouse's copy of the registry (model_registry) from the champion pointers."""
    from modeling.registry_mirror import sync_mirror
    from passos.settings import get_settings
    from warehouse.analytics import refresh_analytics

    stale, rows = sync_mirror(get_settings())  # WarehouseBusyError: one line, exit 4 (handle_errors)
    refresh_analytics(get_settings())
    was = f"it was stale for {', '.join(stale)}" if stale else "it already agreed"
    typer.echo(f"model_registry: {rows} versions mirrored from the registry's files ({was})")


def batch_score(
    task: Annotated[TaskName, typer.Option(help="The task whose champion scores.")] = TaskName.current,
    source: Annotated[
        Path | None,
        typer.Option(exists=True, help="A Parquet file or folder (default: a warehouse year, see --year)."),
    ] = None,
    year: Annotated[
        int | None, typer.Option(help="Warehouse year to score when no --source (default: latest).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default $PASSOS_HOME/batch_scores/...).")] = None,
    reasons: Annotated[bool, typer.Option(help="Add the top reasons per row (slower).")] = False,
    partition_rows: Annotated[int | None, typer.Option(min=1, help="Rows per partition (default setting).")] = None,
    dask_address: Annotated[str | None, typer.Option(help="Dask scheduler (default PASSOS_DASK_ADDRESS).")] = None,
) -> None:
    """Score a Parquet file or a warehouse year in partitions into Parquet (locally or on Dask)."""
    if source is None:
        require_warehouse()
    require_champion(task)
    start_flows(f"batch-score {task.value}: starting the flow")
    from flows.batch_score import batch_score_flow

    result = batch_score_flow(
        task=task.value,
        source=str(source) if source else None,
        year=year,
        out=str(out) if out else None,
        reasons=reasons,
        partition_rows=partition_rows,
        dask_address=dask_address,
    )
    typer.echo(json.dumps(result, default=str))
