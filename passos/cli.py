"""The ``passos`` command line: one entry point for ops, analysts and maintainers."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Passos Mágicos early-warning system: ingest, train, score, serve, monitor.", no_args_is_help=True)
models_app = typer.Typer(help="The model registry: list, show, promote, roll back.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    """Passos Mágicos early-warning system."""
    _setup_logging(verbose)


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
        typer.echo(frame.to_csv(index=False), nl=False)
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
    """The whole pipeline: ingest, train both tasks, score the latest year, drift report."""
    from flows.pipeline import pipeline_flow

    result = pipeline_flow(data_dir=str(data_dir) if data_dir else None)
    typer.echo(json.dumps(result, indent=2, default=str))


def _print_rows(rows: list[dict[str, object]], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in columns}
    typer.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        typer.echo("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))
