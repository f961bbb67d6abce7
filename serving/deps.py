"""The service's FastAPI dependencies: the per-process :class:`Services` and the API-key check.

The dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread,
two thread hand-offs per request for a dictionary look-up (seen in benchmarks/profile_api.py).
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
from collections.abc import Callable
from typing import Annotated, Any

import anyio
from fastapi import Depends, HTTPException, Request, status

from modeling.registry import Registry
from passos.settings import Settings
from serving.guards import key_matches
from serving.model_holder import ModelHolder
from serving.prediction_log import PredictionLog
from serving.responses import ErrorResponse
from serving.shared_state import WorkerStatus
from serving.tracing import ProcessTracer

STATUS_STALE_S = 5.0  # a worker status file older than this is a worker gone
UNAUTHORIZED: dict[str, Any] = {
    "model": ErrorResponse,
    "description": "missing or wrong X-API-Key (when PASSOS_API_KEY is set)",
}


class Services:
    """What the routes need, built once per process in the lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.holder = ModelHolder(
            Registry.from_settings(settings),
            interval_s=settings.reload_interval_s,
            load_timeout_s=settings.model_read_timeout_s + 5,  # the reader's own deadline usually answers first
        )
        self.prediction_log = PredictionLog.from_settings(settings)
        self.tracer = ProcessTracer.from_settings(settings)
        self.salt, self.salt_source = settings.resolved_id_salt()
        self.scoring = anyio.CapacityLimiter(max(1, os.cpu_count() or 1))
        self.status = WorkerStatus(settings.home / "run" / "workers", stale_s=STATUS_STALE_S)
        # Request ids: a random per-process prefix and a counter, unique across workers and
        # restarts; uuid4 read os.urandom on every request.
        prefix, counter = secrets.token_hex(8), itertools.count()
        self.next_request_id: Callable[[], str] = lambda: f"{prefix}{next(counter):016x}"

    def versions(self) -> dict[str, str | None]:
        """The version this worker serves per task (None: none loaded)."""
        return {t: (m.version if (m := self.holder.get(t)) else None) for t in self.holder.tasks}

    def close(self) -> None:
        self.holder.stop()
        self.tracer.shutdown(timeout=self.settings.langfuse_timeout_s)
        self.prediction_log.close()


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def require_api_key(request: Request, services: ServicesDep) -> None:
    """When ``PASSOS_API_KEY`` is set, ``X-API-Key`` must match it (constant-time comparison)."""
    expected = services.settings.api_key_value()
    if expected is None:
        return
    if not key_matches(request.headers.get("x-api-key", ""), expected):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unauthorized", headers={"WWW-Authenticate": "ApiKey"})


AuthDep = Depends(require_api_key)


_ABSOLUTE_PATH = re.compile(r"(?<![\w.~$])/(?:[^\s'\":,;()]+/)*[^\s'\":,;()/]*")


def public_problem(problem: str, settings: Settings) -> str:
    """A problem as an unauthenticated route may tell it: paths relative to ``$PASSOS_HOME``, no others."""
    text = problem.replace(str(settings.home.resolve()), "$PASSOS_HOME").replace(str(settings.home), "$PASSOS_HOME")
    return _ABSOLUTE_PATH.sub("<path>", text)
