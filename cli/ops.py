"""The operations commands: the whole pipeline, the API, the deployments, drift and outcomes."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from cli.base import (
    ExitCode,
    TaskOrAll,
    exit_for_state,
    print_rows,
    require_warehouse,
    start_flows,
)
from passos.errors import PassosError

if TYPE_CHECKING:
    from prefect.states import State


def run(
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", exists=True, help="Input folder (default PASSOS_DATA_DIR).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON, not the summary.")] = False,
) -> None:
    """The whole pipeline: ingest, train both tasks, score the latest year, drift report.

    The gate uses PASSOS_GATE_MIN_RECALL_CURRENT / _NEXT_YEAR, as every other run does.

    Exit 10: the gate rejected a candidate. Exit 11: drift recommends retraining.

    Exit 12: a candidate is held for review. The champions still serve in every case.
    """
    start_flows(
        "run: ingest, train, score, drift (a temporary Prefect server starts first unless PREFECT_API_URL is set)"
    )
    from flows.pipeline import pipeline_flow

    state = cast("State[Any]", pipeline_flow(data_dir=str(data_dir) if data_dir else None, return_state=True))
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
    else:
        from cli.summary import render_summary
        from passos.settings import get_settings

        typer.echo(render_summary(result, get_settings(), state=state.name or "Completed"))
    exit_for_state(state)


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="uvicorn worker processes sharing the port; each loads the models, follows the registry, "
            "and writes its own prediction log files and traces (docs/scaling.md).",
        ),
    ] = 1,
) -> None:
    """Serve the prediction API with uvicorn (models hot-reload from the registry in every worker)."""
    import uvicorn

    from passos.settings import get_settings
    from serving.server import uvicorn_options

    get_settings().resolved_id_salt()  # no salt, or a weak one: refused here, before any worker starts
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
        **uvicorn_options(get_settings(), by_name=True),  # header limits and deadlines, trusted proxies
    )


def drift(
    task: Annotated[TaskOrAll, typer.Option(help="The task to check, or all.")] = TaskOrAll.all,
    year: Annotated[int | None, typer.Option(help="Year to check (default: the latest).")] = None,
    window_days: Annotated[int, typer.Option(min=1, help="Days of the prediction log to check.")] = 30,
    force: Annotated[bool, typer.Option(help="Check even when nothing is new since the last check.")] = False,
) -> None:
    """Drift: a year or predictions the champion has not seen, against its training data.

    Verdicts: stable, watch, retrain recommended (exit 11), or no new data since training.
    """
    require_warehouse()
    start_flows(f"drift {task.value}: starting the flow")
    from flows.drift import drift_flow

    state = cast(
        "State[Any]", drift_flow(task=task.value, year=year, window_days=window_days, force=force, return_state=True)
    )
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    typer.echo(json.dumps(result, indent=2, default=str))
    if state.name == "NothingNew":
        typer.echo(state.message)
    exit_for_state(state)


def outcomes(
    task: Annotated[TaskOrAll, typer.Option(help="current | next_year | all")] = TaskOrAll.all,
    year: Annotated[int | None, typer.Option(help="Only warnings issued on this year.")] = None,
    missed: Annotated[bool, typer.Option(help="List the ids of the students behind who were not warned.")] = True,
) -> None:
    """How earlier warnings turned out: realised recall, precision and missed ids per model version."""
    import duckdb

    from modeling.registry import Registry
    from monitoring.drift import fit_years
    from monitoring.outcomes import fmt_share, summarise
    from passos.settings import get_settings
    from warehouse.connection import connect

    settings = get_settings()
    try:
        with connect(settings, read_only=True) as con:
            rows = con.execute("select * from outcomes").df()
    except (duckdb.Error, FileNotFoundError) as error:
        typer.secho(f"error: {error} (run `passos ingest` and `passos score` first)", fg="red", err=True)
        raise typer.Exit(int(ExitCode.USAGE)) from None
    if task.value != "all":
        rows = rows.loc[rows["task"] == task.value]
    if year is not None:
        rows = rows.loc[rows["year"] == year]
    registry = Registry.from_settings(settings)
    known: dict[str, list[int]] = {}
    for (task_name, version), _ in rows.groupby(["task", "model_version"]):
        try:
            known[str(version)] = fit_years(registry.metadata(str(task_name), str(version)))
        except (PassosError, OSError, ValueError):
            continue
    summaries = summarise(rows, known)
    if not summaries:
        typer.echo("no scored student's outcome is known yet: score a year (`passos score`), then ingest the next")
        return
    table = [
        {
            "task": item.task,
            "year": item.year,
            "model_version": item.model_version,
            "students": item.students,
            "behind": item.behind,
            "warned": item.warned,
            "recall": fmt_share(item.recall),
            "precision": fmt_share(item.precision),
            "missed": len(item.missed),
            "figures": {True: "in-sample", False: "out of sample", None: "unknown"}[item.in_sample],
        }
        for item in summaries
    ]
    print_rows(table, list(table[0]))
    if missed:
        for item in summaries:
            if item.missed:
                typer.echo(f"missed, {item.task} {item.year} {item.model_version}: {', '.join(item.missed)}")


def deploy(
    work_pool: Annotated[
        str | None,
        typer.Option(help="Register on this process work pool and exit (its workers run the flows)."),
    ] = None,
    alarm_block: Annotated[
        str | None,
        typer.Option(
            help="Notify through this Prefect notification block (slug/name, e.g. slack-webhook/ops) when a run "
            "ends Rejected, RetrainRecommended, Failed or Crashed (deployments/alarms.yaml)."
        ),
    ] = None,
) -> None:
    """Register the Prefect deployments and serve them until Ctrl-C, or put them on a work pool (PREFECT_API_URL)."""
    from deployments.deploy import main as deploy_main

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per API call otherwise
    deploy_main(work_pool=work_pool, alarm_block=alarm_block)
