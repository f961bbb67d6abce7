"""The FastAPI prediction service: ``/predict``, ``/predict/batch``, ``/health``, ``/ready``, ``/model``.

Models are loaded in the lifespan (never at import) and followed by a background reloader;
tracing and the prediction log are queued off the request path, so a monitoring failure
never slows or fails a prediction. The routes are in :mod:`serving.predict_routes` and
:mod:`serving.ops_routes`, their dependencies in :mod:`serving.deps`, the ASGI guards in
:mod:`serving.guards`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from passos.settings import Settings, get_settings
from serving.deps import STATUS_STALE_S, Services
from serving.docs import add_offline_docs
from serving.guards import add_guards
from serving.ops_routes import router as ops_router
from serving.predict_routes import publish_batch_request
from serving.predict_routes import router as predict_router
from serving.responses import InvalidRequest, error_body, error_entries, unreadable_body
from serving.server import startup_warnings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service (models load in the lifespan, not here)."""
    current = settings or get_settings()
    app = FastAPI(
        title="Passos Mágicos early warning",
        version="1.0",
        description=(
            "Risk of school setback per student. `current`: behind this year; `next_year`: behind next year. "
            "Send any subset of the features; missing ones are treated as unknown and reported."
        ),
        lifespan=_lifespan(current),
        docs_url=None,
        redoc_url=None,
    )
    add_offline_docs(app)
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(InvalidRequest, invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    app.include_router(ops_router)  # /, /health, the model cards, /ready, /model
    app.include_router(predict_router)
    publish_batch_request(app)
    app.mount("/reports", StaticFiles(directory=current.reports_dir, html=True, check_dir=False), name="reports")
    add_guards(app, current)
    return app


def _lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Build the per-process services at start-up, publish this worker's status while up, close on exit."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services(settings)
        for warning in startup_warnings(settings):
            log.warning("%s\n%s\n%s", "!" * 100, f"SECURITY WARNING: {warning}", "!" * 100)
        services.holder.start()
        app.state.services = services
        heartbeat = asyncio.create_task(_publish_status(services))
        log.info(
            "service up; ready=%s problems=%s; student-id salt from %s",
            services.holder.ready(),
            services.holder.problems,
            services.salt_source,
        )
        try:
            yield
        finally:
            heartbeat.cancel()
            services.status.remove()
            services.close()

    return lifespan


async def _publish_status(services: Services) -> None:
    """Rewrite this worker's status file while it serves (the other workers' ``/ready`` read it)."""
    every = min(STATUS_STALE_S / 5, max(0.1, services.settings.reload_interval_s))
    warned = False
    while True:
        try:
            services.status.write(services.versions())
        except OSError as error:  # a read-only or full home: readiness then sees this worker alone
            if not warned:
                log.warning("cannot publish the worker status in %s: %s", services.status.folder, error)
            warned = True
        await asyncio.sleep(every)


async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
    """A 422 in the routes' shape: one entry per bad field, with its rule and a readable message."""
    return JSONResponse(status_code=422, content=error_body("invalid request", error_entries(error.errors())))


async def invalid_request(_: Request, error: InvalidRequest) -> JSONResponse:
    """A 422 whose entries were built off the event loop (a batch validated in a worker thread)."""
    return JSONResponse(status_code=422, content=error_body("invalid request", error.errors))


async def http_error(_: Request, error: HTTPException) -> JSONResponse:
    """Every other error in the same shape, ``errors`` empty; a body FastAPI could not parse is a 422 like bad JSON.

    FastAPI answers 400 "There was an error parsing the body", raised from the parser's exception,
    for what its JSON decoding does not catch itself: bytes that are not UTF-8, nesting too deep.
    """
    if error.status_code == 400 and error.__cause__ is not None:
        return JSONResponse(status_code=422, content=unreadable_body(error.__cause__))
    return JSONResponse(status_code=error.status_code, content=error_body(str(error.detail)), headers=error.headers)
