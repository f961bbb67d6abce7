"""What every command group of the ``passos`` command line shares: the apps, the error and exit handling, logging.

Arguments are checked before any flow (and so any temporary Prefect server) starts; the project's
own errors end a command with one line on stderr and an :class:`~passos.errors.ExitCode`, never a
traceback (``--verbose`` adds it). Every command registered on these apps gets that handling.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any, TypeVar, cast

import typer

from passos.errors import ExitCode, PassosError, WarehouseBusyError

if TYPE_CHECKING:
    from prefect.states import State

    from modeling.registry import Registry

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
    if open_registry().champion(task.value) is None:
        raise fail(f"no champion for task {task.value!r}: run `passos train` first", ExitCode.USAGE)


def start_flows(message: str) -> None:
    """Announce a flow command, start Prefect's guarded temporary server, and apply the verbosity.

    Called by each flow command after its arguments were checked: a bad argument never waits for
    a server. Without ``PREFECT_API_URL`` the server is started here with a watchdog, so that it
    never outlives the command (cli/server_guard.py). Runs that a killed command left Running are
    set to Crashed (cli/crashed_runs.py).
    """
    progress(message)
    import prefect  # noqa: F401  (Prefect configures its loggers on import: adjust them after)

    from cli.crashed_runs import crash_orphaned_runs_now
    from cli.server_guard import start_guarded_server

    configure_prefect_logging()
    start_guarded_server()
    for crashed in crash_orphaned_runs_now():
        typer.secho(f"warning: {crashed} was left Running by a process that is gone: set to Crashed", err=True)


def progress(message: str) -> None:
    """A progress line on stderr (not with --quiet): which long step starts."""
    if _state["verbosity"] is not Verbosity.QUIET:
        typer.secho(message, err=True, fg="cyan")


WRITING_COMMANDS = frozenset({"ingest", "train", "score", "run", "serve", "drift", "refresh", "batch-score"})


def exit_for_state(state: State[Any]) -> None:
    """Exit with the contract's code for the states that are verdicts, not crashes."""
    codes = {
        "Rejected": ExitCode.GATE_REJECTED,
        "RetrainRecommended": ExitCode.RETRAIN_RECOMMENDED,
        "HeldForReview": ExitCode.HELD_FOR_REVIEW,
    }
    if state.is_failed() and state.name in codes:
        typer.secho(f"{state.name}: {state.message}", fg="red", err=True)
        raise typer.Exit(int(codes[state.name]))


def print_rows(rows: list[dict[str, object]], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in columns}
    typer.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        typer.echo("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))


def fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def open_registry() -> Registry:
    """The model registry under the settings' home."""
    from modeling.registry import Registry
    from passos.settings import get_settings

    return Registry.from_settings(get_settings())
