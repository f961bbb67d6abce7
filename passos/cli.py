"""The ``passos`` command line: one entry point for ops, analysts and maintainers."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any, cast

import typer

app = typer.Typer(
    help="Passos Mágicos early-warning system: ingest, train, score, serve, monitor.", no_args_is_help=True
)
models_app = typer.Typer(help="The model registry: list, show, promote, roll back.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


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
    min_recall: Annotated[
        float | None, typer.Option(help="The gate's minimum recall for this run (default PASSOS_GATE_MIN_RECALL).")
    ] = None,
) -> None:
    """The whole pipeline: ingest, train both tasks, score the latest year, drift report."""
    from flows.pipeline import pipeline_flow

    result = pipeline_flow(data_dir=str(data_dir) if data_dir else None, min_recall=min_recall)
    typer.echo(json.dumps(result, indent=2, default=str))


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

    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


@app.command()
def train(
    task: Annotated[str, typer.Option(help="current | next_year | all")] = "all",
    min_recall: Annotated[float | None, typer.Option(help="Override PASSOS_GATE_MIN_RECALL for this run.")] = None,
) -> None:
    """Train, evaluate out of time, gate and register a model per task (a Prefect flow)."""
    from flows.train import train_flow

    result = cast("list[dict[str, Any]]", train_flow(task=task, min_recall=min_recall))
    for row in result:
        verdict = "ACCEPTED" if row["accepted"] else "REJECTED"
        typer.echo(
            f"{row['task']}: {row['version']} ({row['kind']}, {row['protocol']}) {verdict}"
            f" recall={_fmt(row['test_recall'])} precision={_fmt(row['test_precision'])}"
            f" roc_auc={_fmt(row['test_roc_auc'])} champion={row['champion']}"
        )
        for reason in row["reasons"]:
            typer.echo(f"  - {reason}")


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
    task: Annotated[str, typer.Option(help="current | next_year | all")] = "all",
    year: Annotated[int | None, typer.Option(help="Year to check (default: the latest).")] = None,
    window_days: Annotated[int, typer.Option(help="Days of the prediction log to check.")] = 30,
) -> None:
    """Drift reports: the latest year and the prediction log against each champion's training data."""
    from flows.drift import drift_flow

    result = drift_flow(task=task, year=year, window_days=window_days)
    typer.echo(json.dumps(result, indent=2, default=str))


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
    _sync_registry_table()
    typer.echo(f"{task}: champion is now {version}")


@models_app.command("rollback")
def models_rollback(task: Annotated[str, typer.Option(help="current | next_year")] = "current") -> None:
    """Make the previous champion of a task the champion again."""
    from passos.errors import PassosError

    try:
        version = _registry().rollback(task)
    except PassosError as error:
        typer.secho(f"error: {error}", fg="red", err=True)
        raise typer.Exit(2) from None
    _sync_registry_table()
    typer.echo(f"{task}: champion is now {version}")


def _sync_registry_table() -> None:
    from flows.train import sync_registry_table
    from passos.settings import get_settings

    sync_registry_table(get_settings())


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
) -> None:
    """Register the Prefect deployments and serve them until Ctrl-C, or put them on a work pool (PREFECT_API_URL)."""
    from deployments.deploy import main as deploy_main

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per API call otherwise
    deploy_main(work_pool=work_pool)


if __name__ == "__main__":
    app()
