"""The ``passos`` command line: one entry point for ops, analysts and maintainers.

Arguments are checked before any flow (and so any temporary Prefect server) starts; the project's
own errors end a command with one line on stderr and an :class:`~passos.errors.ExitCode`, never a
traceback (``--verbose`` adds it). Every command registered on these apps gets that handling.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from enum import Enum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import typer

from passos.errors import ExitCode, PassosError, WarehouseBusyError

if TYPE_CHECKING:
    from prefect.states import State

log = logging.getLogger("passos.cli")
F = TypeVar("F", bound=Callable[..., Any])


class TaskName(StrEnum):
    """A prediction task."""

    current = "current"
    next_year = "next_year"


class TaskOrAll(StrEnum):
    """A prediction task, or both."""

    current = "current"
    next_year = "next_year"
    all = "all"


class OutputFormat(StrEnum):
    """How ``passos sql`` prints its result."""

    table = "table"
    csv = "csv"
    json = "json"


class Verbosity(Enum):
    QUIET = "quiet"
    NORMAL = "normal"
    VERBOSE = "verbose"


_state = {"verbosity": Verbosity.NORMAL}
# What configure_prefect_logging changed, undone when the command ends (a test runs many commands).
_changed_levels: dict[str, int] = {}
_added_filters: list[tuple[logging.Handler, logging.Filter]] = []

# Errors a user can cause and fix: one line, no traceback. Anything else is a bug.
EXPECTED_ERRORS = (PassosError, FileNotFoundError, PermissionError)


def fail(message: object, code: ExitCode) -> typer.Exit:
    """Print ``error: message`` on one line of stderr and return the ``typer.Exit`` to raise."""
    typer.secho(f"error: {message}", fg="red", err=True)
    return typer.Exit(int(code))


def handle_errors(command: F) -> F:
    """Turn the project's expected errors into one line and their exit code (the contract in README).

    ``WarehouseBusyError`` exits 4; any other :class:`PassosError`, a missing file or a folder that
    cannot be written exits 2. Anything else is a bug: it propagates with its traceback (exit 1).
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except WarehouseBusyError as error:
            log.debug("warehouse busy", exc_info=True)
            raise fail(f"{error} (try again when the other run has finished)", ExitCode.WAREHOUSE_BUSY) from None
        except EXPECTED_ERRORS as error:
            log.debug("expected error", exc_info=True)
            raise fail(error, ExitCode.USAGE) from None

    return cast("F", wrapper)


class _Typer(typer.Typer):
    """A Typer app whose every command is wrapped by :func:`handle_errors`."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        register = super().command(*args, **kwargs)

        def decorator(function: F) -> F:
            register(handle_errors(function))
            return function

        return decorator


app = _Typer(help="Passos Mágicos early-warning system: ingest, train, score, serve, monitor.", no_args_is_help=True)
models_app = _Typer(help="The model registry: list, show, promote, roll back, sync.", no_args_is_help=True)
app.add_typer(models_app, name="models")

_NOISY_LOGGERS = ("httpx", "httpcore", "uvicorn", "uvicorn.error", "uvicorn.access", "prefect.server", "alembic")


class _NoExpectedTracebacks(logging.Filter):
    """Keep Prefect's message about a failed run but drop the traceback of an expected error."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], EXPECTED_ERRORS):
            record.exc_info = None
            record.exc_text = None
        return True


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RunNamingFormatter(logging.Formatter):
    """Name the Prefect run a line is about: "train_task: Finished in state Completed()", not the bare message.

    Prefect's run loggers put ``task_name`` / ``flow_name`` on each record; the record itself is
    left as it is (the API log handler sends it too).
    """

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        run = getattr(record, "task_name", None) or getattr(record, "flow_name", None)
        if not run:
            return text
        prefix = f"{record.name}: "
        head, found, tail = text.partition(prefix)
        return f"{head}{prefix}{run}: {tail}" if found else f"{run}: {text}"


def setup_logging(verbosity: Verbosity) -> None:
    """Our loggers at INFO (DEBUG with --verbose, WARNING with --quiet); Prefect's set to match.

    Prefect's flow and task run lines are the progress of long steps; the temporary server's and
    the HTTP clients' lines are not, and show only with --verbose.
    """
    level = {Verbosity.QUIET: logging.WARNING, Verbosity.NORMAL: logging.INFO, Verbosity.VERBOSE: logging.DEBUG}
    handler = logging.StreamHandler()
    handler.setFormatter(RunNamingFormatter(LOG_FORMAT))
    logging.basicConfig(level=level[verbosity], handlers=[handler])
    _set_level("", level[verbosity])  # the root logger
    _state["verbosity"] = verbosity


def configure_prefect_logging() -> None:
    """Call after importing Prefect (it configures its loggers on import): apply the verbosity."""
    verbosity = _state["verbosity"]
    if verbosity is Verbosity.VERBOSE:
        return
    for name in _NOISY_LOGGERS:
        _set_level(name, logging.WARNING)
    if verbosity is Verbosity.QUIET:
        # our one-line error says what failed; Prefect's account of it would repeat it
        for name in ("prefect", "prefect.flow_runs", "prefect.task_runs"):
            _set_level(name, logging.CRITICAL)
        return
    quiet_tracebacks = _NoExpectedTracebacks()
    handlers: dict[int, logging.Handler] = {}
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        handlers.update({id(h): h for h in logging.getLogger(name or None).handlers})
    for handler in handlers.values():
        handler.addFilter(quiet_tracebacks)
        _added_filters.append((handler, quiet_tracebacks))


def _set_level(name: str, level: int) -> None:
    logger = logging.getLogger(name)
    _changed_levels.setdefault(name, logger.level)
    logger.setLevel(level)


def restore_logging() -> None:
    """Undo :func:`configure_prefect_logging` (called when the command ends)."""
    for name, level in _changed_levels.items():
        logging.getLogger(name).setLevel(level)
    _changed_levels.clear()
    for handler, log_filter in _added_filters:
        handler.removeFilter(log_filter)
    _added_filters.clear()


def require_warehouse() -> None:
    """Refuse at once, before a flow and its Prefect server start, when there is no warehouse yet."""
    from passos.settings import get_settings

    path = get_settings().warehouse_path
    if not path.exists():
        raise fail(f"no warehouse at {path}: run `passos ingest` first", ExitCode.USAGE)


def require_champion(task: TaskName) -> None:
    """Refuse at once when the task has no champion to score with."""
    if _registry().champion(task.value) is None:
        raise fail(f"no champion for task {task.value!r}: run `passos train` first", ExitCode.USAGE)


def start_flows(message: str) -> None:
    """Announce a flow command, start Prefect's guarded temporary server, and apply the verbosity.

    Called by each flow command after its arguments were checked: a bad argument never waits for
    a server. Without ``PREFECT_API_URL`` the server is started here with a watchdog, so that it
    never outlives the command (passos/server_guard.py).
    """
    progress(message)
    import prefect  # noqa: F401  (Prefect configures its loggers on import: adjust them after)

    from passos.server_guard import start_guarded_server

    configure_prefect_logging()
    start_guarded_server()


def progress(message: str) -> None:
    """A progress line on stderr (not with --quiet): which long step starts."""
    if _state["verbosity"] is not Verbosity.QUIET:
        typer.secho(message, err=True, fg="cyan")


WRITING_COMMANDS = frozenset({"ingest", "train", "score", "run", "serve", "drift", "refresh", "batch-score"})


@app.callback()
def main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging and full tracebacks.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and the result.")] = False,
) -> None:
    """Passos Mágicos early-warning system."""
    if verbose and quiet:
        raise fail("--verbose and --quiet cannot be used together", ExitCode.USAGE)
    setup_logging(Verbosity.VERBOSE if verbose else Verbosity.QUIET if quiet else Verbosity.NORMAL)
    ctx.call_on_close(restore_logging)
    if ctx.invoked_subcommand in WRITING_COMMANDS and not ctx.resilient_parsing and "--help" not in sys.argv:
        from passos.settings import get_settings

        try:
            get_settings().ensure_writable()
        except PermissionError as error:
            raise fail(error, ExitCode.USAGE) from None


@app.command()
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
    _print_rows(summary, ["source", "year", "status", "rows_read", "rows_loaded", "rows_quarantined", "dq_issues"])
    failed = [str(row["source"]) for row in summary if row["status"] == "failed"]
    if failed:
        raise fail(
            f"{len(failed)} of {len(summary)} sources failed to load ({', '.join(failed)}); the others were loaded:"
            " see the notes above and `passos sql \"select source, note from ingest_runs where status = 'failed'\"`",
            ExitCode.INPUT_FAILED,
        )


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="A read-only SQL query over the analysts' database.")],
    output_format: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = OutputFormat.table,
    max_rows: Annotated[int, typer.Option("--max-rows", min=1, help="Rows shown in table format.")] = 100,
) -> None:
    """Run a query on $PASSOS_HOME/analytics.duckdb (never blocks a flow) and print the result.

    Read-only: the query sees that database and nothing else (no files, no network, no ATTACH).
    """
    import duckdb

    from passos.settings import get_settings
    from warehouse.connection import connect_analyst

    settings = get_settings()
    if not settings.analytics_path.exists():
        hint = "run `passos refresh`" if settings.warehouse_path.exists() else "run `passos ingest` first"
        raise fail(f"no analysts' database at {settings.analytics_path}: {hint}", ExitCode.USAGE)
    try:
        with connect_analyst(settings.analytics_path) as con:
            frame = con.execute(query).df()
    except duckdb.Error as error:
        raise fail(sql_error_text(error), ExitCode.USAGE) from None
    if output_format is OutputFormat.csv:
        from passos.safe_csv import write_csv

        typer.echo(write_csv(frame), nl=False)
    elif output_format is OutputFormat.json:
        typer.echo(frame.to_json(orient="records", date_format="iso", force_ascii=False))
    else:
        import pandas as pd

        with pd.option_context("display.max_columns", 50, "display.width", 200, "display.max_colwidth", 200):
            typer.echo(frame.head(max_rows).to_string(index=False))
        if len(frame) > max_rows:
            typer.echo(f"... {len(frame)} rows in all (showing {max_rows})")


def sql_error_text(error: Exception) -> str:
    """DuckDB's message on one line, then its ``LINE n:`` and caret lines as they are.

    The caret is aligned under the query line it follows, so those two lines keep their spacing.
    """
    text, _, pointer = str(error).partition("\nLINE ")
    message = " ".join(text.split())
    return f"{message}\nLINE {pointer.rstrip()}" if pointer else message


@app.command("call-list")
def call_list(
    out: Annotated[Path, typer.Option("--out", dir_okay=False, help="Output file; written as FILE.csv and FILE.xlsx.")],
) -> None:
    """Export whom to call: students behind now and on-track students newly at risk, each ranked by risk."""
    from passos.call_list import read_call_list, write_call_list
    from passos.settings import get_settings

    settings = get_settings()
    require_warehouse()
    source = settings.analytics_path if settings.analytics_path.exists() else None
    frame = read_call_list(settings, path=source)
    if frame.empty:
        raise fail("the call list is empty: run `passos score --task next_year` first", ExitCode.USAGE)
    csv_path, xlsx_path = write_call_list(frame, out)
    counts = ", ".join(f"{n} {category}" for category, n in frame["category"].value_counts().items())
    typer.echo(f"wrote {csv_path} and {xlsx_path}: {counts}")


@app.command()
def refresh() -> None:
    """Rebuild $PASSOS_HOME/analytics.duckdb from the warehouse (every flow that writes does it too)."""
    from warehouse.analytics import refresh_analytics

    result = refresh_analytics()
    rows = sum(result.tables.values())
    typer.echo(f"published {result.path}: {len(result.tables)} tables, {rows} rows, {result.seconds:.2f} s")


@app.command()
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
        from passos.settings import get_settings
        from passos.summary import render_summary

        typer.echo(render_summary(result, get_settings(), state=state.name or "Completed"))
    _exit_for_state(state)


def _exit_for_state(state: State[Any]) -> None:
    """Exit with the contract's code for the states that are verdicts, not crashes."""
    codes = {
        "Rejected": ExitCode.GATE_REJECTED,
        "RetrainRecommended": ExitCode.RETRAIN_RECOMMENDED,
        "HeldForReview": ExitCode.HELD_FOR_REVIEW,
    }
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


@app.command()
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
            f" recall={_fmt(row['test_recall'])} precision={_fmt(row['test_precision'])}"
            f" roc_auc={_fmt(row['test_roc_auc'])} champion={row['champion']}"
        )
        for reason in row["reasons"]:
            typer.echo(f"  - {reason}")
    _exit_for_state(state)


@app.command()
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


@app.command()
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


@app.command()
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
    _exit_for_state(state)


@app.command()
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
def models_list(task: Annotated[TaskName | None, typer.Option(help="Only this task.")] = None) -> None:
    """Every registered version, newest first, with its gate verdict and test figures."""
    rows = []
    for item in _registry().list_versions(task.value if task else None):
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
    task = registry.find(version)
    typer.echo(json.dumps(registry.metadata(task, version), indent=2, default=str))
    typer.echo(f"model card: {registry.path(task, version) / 'card.md'}")


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="A version the gate accepted.")],
    reason: Annotated[str, typer.Option(help="Why, for the record.")] = "promoted by hand",
) -> None:
    """Make an accepted version its task's champion (the API follows within seconds)."""
    registry = _registry()
    task = registry.find(version)
    registry.promote(task, version, reason=reason)
    _sync_mirror_after_pointer_change()
    typer.echo(f"{task}: champion is now {version}")


@models_app.command("rollback")
def models_rollback(
    task: Annotated[TaskName, typer.Option(help="The task to roll back.")] = TaskName.current,
) -> None:
    """Make the previous champion of a task the champion again."""
    version = _registry().rollback(task.value)
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


@models_app.command("sync")
def models_sync() -> None:
    """Rebuild the warehouse's copy of the registry (model_registry) from the champion pointers."""
    from modeling.registry_mirror import sync_mirror
    from passos.settings import get_settings
    from warehouse.analytics import refresh_analytics

    stale, rows = sync_mirror(get_settings())  # WarehouseBusyError: one line, exit 4 (handle_errors)
    refresh_analytics(get_settings())
    was = f"it was stale for {', '.join(stale)}" if stale else "it already agreed"
    typer.echo(f"model_registry: {rows} versions mirrored from the registry's files ({was})")


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


@app.command("batch-score")
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
