"""The ``passos`` command line: one entry point for ops, analysts and maintainers."""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

if TYPE_CHECKING:
    from prefect.states import State

app = typer.Typer(
    help="Passos Mágicos early-warning system: ingest, train, score, serve, monitor.", no_args_is_help=True
)
models_app = typer.Typer(help="The model registry: list, show, promote, roll back, sync.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


class TaskOption(StrEnum):
    """The tasks a command can run for (a misspelt one is a usage error, exit 2)."""

    current = "current"
    next_year = "next_year"
    all = "all"


WRITING_COMMANDS = frozenset({"ingest", "train", "score", "run", "serve", "drift"})
# Commands that run Prefect flows: without PREFECT_API_URL they get a temporary Prefect server,
# started up front with a watchdog so that it never outlives the command (passos/server_guard.py).
FLOW_COMMANDS = frozenset({"ingest", "train", "score", "run", "drift", "batch-score"})


@app.callback()
def main(
    ctx: typer.Context, verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False
) -> None:
    """Passos Mágicos early-warning system."""
    _setup_logging(verbose)
    if ctx.invoked_subcommand in WRITING_COMMANDS and "--help" not in ctx.args:
        from passos.settings import get_settings

        try:
            get_settings().ensure_writable()
        except PermissionError as error:
            typer.secho(f"error: {error}", fg="red", err=True)
            raise typer.Exit(2) from None
    if ctx.invoked_subcommand in FLOW_COMMANDS and "--help" not in ctx.args:
        from passos.server_guard import start_guarded_server

        start_guarded_server()


@app.command()
def ingest(
    source: Annotated[
        list[Path] | None,
        typer.Option("--source", "-s", help="A folder of pede_YYYY.csv files, a CSV, or a workbook. Repeatable."),
    ] = None,
) -> None:
    """Load PEDE files into the DuckDB warehouse (default: PASSOS_DATA_DIR)."""
    from flows.ingest import ingest_flow

    summary = ingest_flow(sources=[str(s) for s in source] if source else None)
    _print_rows(summary, ["source", "year", "status", "rows_read", "rows_loaded", "rows_quarantined", "dq_issues"])
    if any(row["status"] == "failed" for row in summary):
        typer.secho("some sources were rejected: see the notes above and `passos sql`", fg="yellow", err=True)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="A read-only SQL query over the warehouse.")],
    output_format: Annotated[str, typer.Option("--format", "-f", help="table | csv | json")] = "table",
    max_rows: Annotated[int, typer.Option("--max-rows", help="Rows shown in table format.")] = 100,
) -> None:
    """Run a read-only query on the warehouse and print the result."""
    import duckdb

    from warehouse.connection import connect

    try:
        with connect(read_only=True) as con:
            frame = con.execute(query).df()
    except (duckdb.Error, FileNotFoundError) as error:
        typer.secho(f"error: {error}", fg="red", err=True)
        raise typer.Exit(2) from None
    if output_format == "csv":
        from passos.safe_csv import write_csv

        typer.echo(write_csv(frame), nl=False)
    elif output_format == "json":
        typer.echo(frame.to_json(orient="records", date_format="iso", force_ascii=False))
    else:
        import pandas as pd

        with pd.option_context("display.max_columns", 50, "display.width", 200):
            typer.echo(frame.head(max_rows).to_string(index=False))
        if len(frame) > max_rows:
            typer.echo(f"... {len(frame)} rows in all (showing {max_rows})")


@app.command()
def run(
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Input folder (default PASSOS_DATA_DIR).")] = None,
) -> None:
    """The whole pipeline: ingest, train both tasks, score the latest year, drift report.

    The gate uses PASSOS_GATE_MIN_RECALL_CURRENT / _NEXT_YEAR, as every other run does.
    Exits 10 when the gate rejected a candidate, 11 when drift recommends retraining.
    """
    from flows.pipeline import pipeline_flow

    state = cast("State[Any]", pipeline_flow(data_dir=str(data_dir) if data_dir else None, return_state=True))
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    typer.echo(json.dumps(result, indent=2, default=str))
    _exit_for_state(state)


def _exit_for_state(state: State[Any]) -> None:
    """Exit with the contract's code for the states that are verdicts, not crashes."""
    from passos.errors import ExitCode

    codes = {"Rejected": ExitCode.GATE_REJECTED, "RetrainRecommended": ExitCode.RETRAIN_RECOMMENDED}
    if state.is_failed() and state.name in codes:
        typer.secho(f"{state.name}: {state.message}", fg="red", err=True)
        raise typer.Exit(int(codes[state.name]))


def _print_rows(rows: list[dict[str, object]], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in columns}
    typer.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        typer.echo("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the prediction API with uvicorn (one worker; models hot-reload from the registry)."""
    import uvicorn

    from passos.settings import get_settings
    from serving.server import uvicorn_options

    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
        **uvicorn_options(get_settings()),  # header limits and deadlines, trusted proxies
    )


@app.command()
def train(
    task: Annotated[TaskOption, typer.Option(help="current | next_year | all")] = TaskOption.all,
) -> None:
    """Train, evaluate out of time, gate and register a model per task (a Prefect flow).

    The gate's recall floor is PASSOS_GATE_MIN_RECALL_CURRENT / _NEXT_YEAR. Exits 10 when the
    gate rejected a candidate (the champion is unchanged).
    """
    from flows.train import train_flow

    state = cast("State[Any]", train_flow(task=task.value, return_state=True))
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    for row in cast("list[dict[str, Any]]", result):
        verdict = "ACCEPTED" if row["accepted"] else "REJECTED"
        typer.echo(
            f"{row['task']}: {row['version']} ({row['kind']}, {row['protocol']}) {verdict}"
            f" recall={_fmt(row['test_recall'])} precision={_fmt(row['test_precision'])}"
            f" roc_auc={_fmt(row['test_roc_auc'])} champion={row['champion']}"
        )
        for reason in row["reasons"]:
            typer.echo(f"  - {reason}")
    _exit_for_state(state)


@app.command()
def score(
    task: Annotated[str, typer.Option(help="current | next_year")] = "current",
    year: Annotated[int | None, typer.Option(help="Year to score (default: the latest).")] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the ranked scores to this CSV.")] = None,
) -> None:
    """Score one year's students with the task's champion into the `risk_scores` table."""
    from flows.score import score_flow

    result = score_flow(task=task, year=year, out=str(out) if out else None)
    typer.echo(json.dumps(result))


@app.command()
def drift(
    task: Annotated[TaskOption, typer.Option(help="current | next_year | all")] = TaskOption.all,
    year: Annotated[int | None, typer.Option(help="Year to check (default: the latest).")] = None,
    window_days: Annotated[int, typer.Option(help="Days of the prediction log to check.", min=1)] = 30,
    force: Annotated[bool, typer.Option(help="Check even when nothing is new since the last check.")] = False,
) -> None:
    """Drift: a year or predictions the champion has not seen, against its training data.

    Verdicts: stable, watch, retrain recommended (exit 11), or no new data since training.
    """
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
    _exit_for_state(state)


@app.command()
def outcomes(
    task: Annotated[TaskOption, typer.Option(help="current | next_year | all")] = TaskOption.all,
    year: Annotated[int | None, typer.Option(help="Only warnings issued on this year.")] = None,
    missed: Annotated[bool, typer.Option(help="List the ids of the students behind who were not warned.")] = True,
) -> None:
    """How earlier warnings turned out: realised recall, precision and missed ids per model version."""
    import duckdb

    from modeling.registry import Registry
    from monitoring.drift import fit_years
    from monitoring.outcomes import fmt_share, summarise
    from passos.errors import ExitCode, PassosError
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
    _print_rows(table, list(table[0]))
    if missed:
        for item in summaries:
            if item.missed:
                typer.echo(f"missed, {item.task} {item.year} {item.model_version}: {', '.join(item.missed)}")


def _registry():
    from modeling.registry import Registry
    from passos.settings import get_settings

    return Registry.from_settings(get_settings())


@models_app.command("list")
def models_list(task: Annotated[str | None, typer.Option(help="Only this task.")] = None) -> None:
    """Every registered version, newest first, with its gate verdict and test figures."""
    rows = []
    for item in _registry().list_versions(task):
        metrics = item.get("metrics") or {}
        rows.append(
            {
                "task": item["task"],
                "version": item["version"],
                "kind": item.get("kind"),
                "accepted": item.get("accepted"),
                "champion": "*" if item.get("is_champion") else "",
                "recall": _fmt(metrics.get("recall")),
                "precision": _fmt(metrics.get("precision")),
                "roc_auc": _fmt(metrics.get("roc_auc")),
                "created_at": item.get("created_at"),
            }
        )
    _print_rows(
        rows, ["task", "version", "kind", "accepted", "champion", "recall", "precision", "roc_auc", "created_at"]
    )


@models_app.command("show")
def models_show(version: Annotated[str, typer.Argument(help="A version id.")]) -> None:
    """A version's metadata (JSON) and where its model card is."""
    registry = _registry()
    try:
        task = registry.find(version)
    except Exception as error:
        typer.secho(f"error: {error}", fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(registry.metadata(task, version), indent=2, default=str))
    typer.echo(f"model card: {registry.path(task, version) / 'card.md'}")


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="A version the gate accepted.")],
    reason: Annotated[str, typer.Option(help="Why, for the record.")] = "promoted by hand",
) -> None:
    """Make an accepted version its task's champion (the API follows within seconds)."""
    from passos.errors import PassosError

    registry = _registry()
    try:
        task = registry.find(version)
        registry.promote(task, version, reason=reason)
    except PassosError as error:
        typer.secho(f"error: {error}", fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{task}: champion is now {version}")
    _sync_mirror_after_pointer_change()


@models_app.command("rollback")
def models_rollback(task: Annotated[str, typer.Option(help="current | next_year")] = "current") -> None:
    """Make the previous champion of a task the champion again."""
    from passos.errors import PassosError

    try:
        version = _registry().rollback(task)
    except PassosError as error:
        typer.secho(f"error: {error}", fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{task}: champion is now {version}")
    _sync_mirror_after_pointer_change()


# A promotion is done once its pointer is switched: the warehouse's copy may lag, never block it.
PROMOTE_LOCK_RETRIES = 1


def _sync_mirror_after_pointer_change() -> None:
    from modeling.registry_mirror import sync_mirror
    from passos.errors import WarehouseBusyError
    from passos.settings import get_settings

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


@models_app.command("sync")
def models_sync() -> None:
    """Rebuild the warehouse's copy of the registry (model_registry) from the champion pointers."""
    from modeling.registry_mirror import sync_mirror
    from passos.errors import ExitCode, WarehouseBusyError
    from passos.settings import get_settings

    try:
        stale, rows = sync_mirror(get_settings())
    except WarehouseBusyError as error:
        typer.secho(f"error: {error}", fg="red", err=True)
        raise typer.Exit(ExitCode.WAREHOUSE_BUSY) from None
    was = f"it was stale for {', '.join(stale)}" if stale else "it already agreed"
    typer.echo(f"model_registry: {rows} versions mirrored from the registry's files ({was})")


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


@app.command("batch-score")
def batch_score(
    task: Annotated[str, typer.Option(help="current | next_year")] = "current",
    source: Annotated[
        Path | None, typer.Option(help="A Parquet file or folder (default: a warehouse year, see --year).")
    ] = None,
    year: Annotated[
        int | None, typer.Option(help="Warehouse year to score when no --source (default: latest).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default $PASSOS_HOME/batch_scores/...).")] = None,
    reasons: Annotated[bool, typer.Option(help="Add the top reasons per row (slower).")] = False,
    partition_rows: Annotated[int | None, typer.Option(help="Rows per partition (default setting).")] = None,
    dask_address: Annotated[str | None, typer.Option(help="Dask scheduler (default PASSOS_DASK_ADDRESS).")] = None,
) -> None:
    """Score a Parquet file or a warehouse year in partitions into Parquet (locally or on Dask)."""
    from flows.batch_score import batch_score_flow

    result = batch_score_flow(
        task=task,
        source=str(source) if source else None,
        year=year,
        out=str(out) if out else None,
        reasons=reasons,
        partition_rows=partition_rows,
        dask_address=dask_address,
    )
    typer.echo(json.dumps(result, default=str))


@app.command()
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


if __name__ == "__main__":
    app()
