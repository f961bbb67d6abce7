"""The project's own log lines in the Prefect run's Logs tab; third-party HTTP chatter kept out.

Prefect sends to its API only what its run loggers (``get_run_logger``) and the loggers named
in ``PREFECT_LOGGING_EXTRA_LOGGERS`` emit. The project logs with ``logging.getLogger(__name__)``
(the leakage audit's warning, the chosen threshold, the drift verdicts), so without this those
lines stay on the console of whichever process ran the flow. :func:`project_logs` attaches
Prefect's API handler to the project's top-level loggers for the length of a flow run, whether
the run was started by the CLI, ``make run``, a schedule or the UI, and raises ``httpx`` and
``httpcore`` to WARNING so that one line per API call does not bury them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

# The top-level packages of the project (pyproject's packages): every module logs under one.
PROJECT_LOGGERS = ("features", "flows", "modeling", "monitoring", "passos", "serving", "warehouse")
# Third-party loggers that log one INFO line per HTTP request, Prefect's own API calls included.
CHATTY_LOGGERS = ("httpx", "httpcore")


def _in_a_run(_record: logging.LogRecord) -> bool:
    """Only records emitted inside a flow or task run (a helper thread of a library has no run to go to)."""
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


@contextmanager
def project_logs(level: int = logging.INFO) -> Iterator[None]:
    """Within a flow run, send the project's log records at ``level`` and above to the run's logs.

    Nested use (a flow calling another flow) attaches the handler once. Everything is restored
    on exit, so a long-lived process (the serve process, a test session) is left as it was.
    """
    from prefect.logging.handlers import APILogHandler

    handler = APILogHandler()
    handler.setLevel(level)
    handler.addFilter(_in_a_run)
    attached: list[logging.Logger] = []
    levels: dict[str, int] = {}
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        if any(isinstance(existing, APILogHandler) for existing in logger.handlers):
            continue
        logger.addHandler(handler)
        attached.append(logger)
        if logger.getEffectiveLevel() > level:
            levels[name] = logger.level
            logger.setLevel(level)
    for name in CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            levels[name] = logger.level
            logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger in attached:
            logger.removeHandler(handler)
        for name, previous in levels.items():
            logging.getLogger(name).setLevel(previous)
