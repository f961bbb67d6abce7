"""The ``passos`` command line: one entry point for ops, analysts and maintainers.

The commands live by group (``cli/data.py``, ``cli/models.py``, ``cli/ops.py``); this module
registers them on one app, in the order ``passos --help`` lists them. Every command so registered
ends the project's own errors with one line and an exit code (``cli/base.py``).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cli import data, models, ops
from cli.base import (
    WRITING_COMMANDS,
    ExitCode,
    Verbosity,
    app,
    fail,
    models_app,
    restore_logging,
    setup_logging,
)

__all__ = ["app"]


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


app.command()(data.ingest)
app.command()(data.sql)
app.command("call-list")(data.call_list)
app.command()(data.refresh)
app.command()(ops.run)
app.command()(ops.serve)
app.command()(models.train)
app.command()(models.retrain)
app.command()(models.score)
app.command()(ops.drift)
app.command()(ops.outcomes)
models_app.command("list")(models.models_list)
models_app.command("show")(models.models_show)
models_app.command("promote")(models.models_promote)
models_app.command("rollback")(models.models_rollback)
models_app.command("sync")(models.models_sync)
app.command("batch-score")(models.batch_score)
app.command()(ops.deploy)


if __name__ == "__main__":
    app()
