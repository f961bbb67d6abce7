"""The data commands: load the files, publish the analysts' copy, query it, export the call list."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.base import ExitCode, OutputFormat, fail, print_rows, require_warehouse, start_flows


def ingest(
    source: Annotated[
        list[Path] | None,
        typer.Option(
            "--source",
            "-s",
            exists=True,
            help="A folder of pede_YYYY.csv files, a CSV, or a workbook. Repeatable.",
        ),
    ] = None,
) -> None:
    """Load PEDE files into the DuckDB warehouse (default: PASSOS_DATA_DIR).

    Exits 3 when a source failed to load (the others are loaded and kept).
    """
    start_flows("ingest: starting the flow (a temporary Prefect server starts first unless PREFECT_API_URL is set)")
    from flows.ingest import ingest_flow

    summary = ingest_flow(sources=[str(s) for s in source] if source else None)
    print_rows(summary, ["source", "year", "status", "rows_read", "rows_loaded", "rows_quarantined", "dq_issues"])
    for row in summary:
        if row["status"] == "loaded" and row["note"]:  # loaded, with something to know (formulas without values)
            typer.echo(f"warning: {row['source']}: {row['note']}", err=True)
    failed = [str(row["source"]) for row in summary if row["status"] == "failed"]
    if failed:
        raise fail(
            f"{len(failed)} of {len(summary)} sources failed to load ({', '.join(failed)}); the others were loaded:"
            " see the notes above and `passos sql \"select source, note from ingest_runs where status = 'failed'\"`",
            ExitCode.INPUT_FAILED,
        )


def sql(
    query: Annotated[str, typer.Argument(help="A read-only SQL query over the analysts' database.")],
    output_format: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = OutputFormat.table,
    max_rows: Annotated[int, typer.Option("--max-rows", min=1, help="Rows read and shown in table format.")] = 100,
) -> None:
    """Run a query on $PASSOS_HOME/analytics.duckdb (never blocks a flow) and print the result.

    Read-only: the query sees that database and nothing else (no files, no network, no ATTACH).
    """
    import duckdb
    import pandas as pd

    from passos.settings import get_settings
    from warehouse.connection import connect_analyst

    settings = get_settings()
    if not settings.analytics_path.exists():
        hint = "run `passos refresh`" if settings.warehouse_path.exists() else "run `passos ingest` first"
        raise fail(f"no analysts' database at {settings.analytics_path}: {hint}", ExitCode.USAGE)
    try:
        with connect_analyst(settings.analytics_path) as con:
            try:
                result = con.sql(query)
            except duckdb.Error:
                con.execute(query)  # raises it again, with the query line and the caret under the mistake
                raise
            if result is None:  # a statement without a result set: nothing to print
                return
            # In a table the limit reaches DuckDB's plan, so it computes no more than these rows; one
            # more than shown says whether rows were cut.
            frame = (result.limit(max_rows + 1) if output_format is OutputFormat.table else result).df()
    except duckdb.Error as error:
        raise fail(sql_error_text(error), ExitCode.USAGE) from None
    if output_format is OutputFormat.csv:
        from passos.safe_csv import write_csv

        typer.echo(write_csv(frame), nl=False)
    elif output_format is OutputFormat.json:
        typer.echo(frame.to_json(orient="records", date_format="iso", force_ascii=False))
    else:
        with pd.option_context("display.max_columns", 50, "display.width", 200, "display.max_colwidth", 200):
            typer.echo(frame.head(max_rows).to_string(index=False))
        if len(frame) > max_rows:
            rows = "row" if max_rows == 1 else "rows"
            typer.echo(
                f"... more than {max_rows} {rows}: showing the first {max_rows}"
                " (raise --max-rows, or --format csv for all)"
            )


def sql_error_text(error: Exception) -> str:
    """DuckDB's message on one line, then its ``LINE n:`` and caret lines as they are.

    The caret is aligned under the query line it follows, so those two lines keep their spacing.
    """
    text, _, pointer = str(error).partition("\nLINE ")
    message = " ".join(text.split())
    return f"{message}\nLINE {pointer.rstrip()}" if pointer else message


def call_list(
    out: Annotated[Path, typer.Option("--out", dir_okay=False, help="Output file; written as FILE.csv and FILE.xlsx.")],
) -> None:
    """Export whom to call: students behind now and on-track students newly at risk, each ranked by risk."""
    from passos.settings import get_settings
    from warehouse.call_list import read_call_list, write_call_list

    settings = get_settings()
    require_warehouse()
    source = settings.analytics_path if settings.analytics_path.exists() else None
    frame = read_call_list(settings, path=source)
    if frame.empty:
        raise fail("the call list is empty: run `passos score --task next_year` first", ExitCode.USAGE)
    csv_path, xlsx_path = write_call_list(frame, out)
    counts = ", ".join(f"{n} {category}" for category, n in frame["category"].value_counts().items())
    typer.echo(f"wrote {csv_path} and {xlsx_path}: {counts}")


def refresh() -> None:
    """Rebuild $PASSOS_HOME/analytics.duckdb from the warehouse (every flow that writes does it too)."""
    from warehouse.analytics import refresh_analytics

    result = refresh_analytics()
    rows = sum(result.tables.values())
    typer.echo(f"published {result.path}: {len(result.tables)} tables, {rows} rows, {result.seconds:.2f} s")
