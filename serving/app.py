"""The FastAPI prediction service: ``/predict``, ``/predict/batch``, ``/health``, ``/ready``, ``/model``.

Models are loaded in the lifespan (never at import) and followed by a background reloader;
tracing and the prediction log are queued off the request path, so a monitoring failure
never slows or fails a prediction.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import itertools
import logging
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
import orjson
from fastapi import Body, Depends, FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from features.featuresets import derive, encode, feature_names
from modeling.registry import Registry
from modeling.scoring import answer_rows
from passos.settings import Settings, get_settings
from serving.docs import add_offline_docs
from serving.model_holder import Loaded, ModelHolder
from serving.ops_routes import Readiness
from serving.ops_routes import router as ops_router
from serving.prediction_log import PredictionLog, coarsened, hash_student_id
from serving.schemas import (
    MAX_REPORTED_ERRORS,
    PREDICT_EXAMPLES,
    BatchPrediction,
    BatchRequest,
    ErrorResponse,
    Prediction,
    PredictRequest,
    did_you_mean,
)
from serving.server import startup_warnings
from serving.shared_state import SharedBuckets, WorkerStatus
from serving.tracing import ProcessTracer

log = logging.getLogger(__name__)
NOT_FEATURES = frozenset({"task", "student_id", "year", "ano_ingresso", "data_nasc", "ano_nasc"})
# Which worker process answered (`passos serve --workers N`): a header on the prediction routes.
WORKER_HEADER = "x-worker-pid"
RATE_LIMIT_SCOPE_KEY = "passos.rate_limit"
STATUS_STALE_S = 5.0  # a worker status file older than this is a worker gone
_T = TypeVar("_T")


class FastJSON(Response):
    """JSON rendered by orjson, for the prediction routes (no re-validation of our own output)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


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


# The dependencies are `async def`: FastAPI runs a plain `def` dependency in a worker thread,
# two thread hand-offs per request for a dictionary look-up (seen in benchmarks/profile_api.py).
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def require_api_key(request: Request, services: ServicesDep) -> None:
    """When ``PASSOS_API_KEY`` is set, ``X-API-Key`` must match it (constant-time comparison)."""
    expected = services.settings.api_key_value()
    if expected is None:
        return
    if not _key_matches(request.headers.get("x-api-key", ""), expected):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unauthorized", headers={"WWW-Authenticate": "ApiKey"})


AuthDep = Depends(require_api_key)


def _key_matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


_ABSOLUTE_PATH = re.compile(r"(?<![\w.~$])/(?:[^\s'\":,;()]+/)*[^\s'\":,;()/]*")


def public_problem(problem: str, settings: Settings) -> str:
    """A problem as an unauthenticated route may tell it: paths relative to ``$PASSOS_HOME``, no others."""
    text = problem.replace(str(settings.home.resolve()), "$PASSOS_HOME").replace(str(settings.home), "$PASSOS_HOME")
    return _ABSOLUTE_PATH.sub("<path>", text)


def sent_inputs(student: BaseModel) -> dict[str, Any]:
    """The fields a client sent, without ``task`` and ``student_id``: the model's raw inputs, logged as such."""
    return {k: v for k, v in student.__dict__.items() if v is not None and k not in ("task", "student_id")}


def predict_rows(loaded: Loaded, inputs: list[dict[str, Any]], *, reasons: bool = True) -> list[dict[str, Any]]:
    """Score students (their :func:`sent_inputs`) through the scoring core (``modeling.scoring.answer_rows``).

    Each student is answered by the richest validated variant their fields allow; one whose fields
    no validated variant can take gets ``risk_label: "unknown"`` and the fields to send
    (``needed``), never a guess. This adds what only the service knows: the task, the version,
    the share of importance the fields sent carry, and the fields the task does not use.
    """
    used = feature_names(loaded.task)
    used_set = set(used)
    records = [derive(sent, year=sent.get("year")) for sent in inputs]
    answers, scored = answer_rows(loaded.model, encode(records, loaded.task), sent=inputs, reasons=reasons)
    out = []
    for sent, answer, known_row in zip(inputs, answers, scored.known, strict=True):
        variant = answer["variant"]
        importance = loaded.importance if variant in (None, "full") else loaded.variant_importance.get(variant, {})
        out.append(
            {
                **answer,
                "task": loaded.task,
                "model_version": loaded.version,
                "known_importance": round(
                    sum(importance.get(n, 0.0) for n, present in zip(used, known_row, strict=True) if present), 4
                ),
                "ignored": [name for name in sent if name not in used_set and name not in NOT_FEATURES],
            }
        )
    return out


def _model_or_503(services: Services, task: str) -> Loaded:
    loaded = services.holder.get(task)
    if loaded is None:
        problem = services.holder.problems.get(task, "no model loaded")
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"no {task} model available: {problem}")
    return loaded


@dataclass(frozen=True)
class _Call:
    """One call of a prediction route, as the local log and the trace record it."""

    services: Services
    endpoint: str
    task: str
    started: float = field(default_factory=time.perf_counter)
    request_id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "request_id", self.services.next_request_id())

    def log(
        self,
        student: BaseModel,
        inputs: dict[str, Any],
        result: dict[str, Any] | None,
        latency_ms: float,
        error: str | None,
    ) -> tuple[dict[str, Any], str | None]:
        """Append one prediction to the local log; returns (output, student hash) for the trace."""
        raw_id = getattr(student, "student_id", None)
        student_hash = hash_student_id(raw_id, self.services.salt) if raw_id else None
        output = {"risk_score": result["risk_score"], "risk_label": result["risk_label"]} if result else {}
        self.services.prediction_log.append(
            {
                "request_id": self.request_id,
                "endpoint": self.endpoint,
                "task": self.task,
                "model_version": result["model_version"] if result else None,
                "latency_ms": latency_ms,
                "inputs": inputs,
                **output,
                "student_hash": student_hash,
                "error": error,
            }
        )
        return output, student_hash

    def latency_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def record(
        self,
        students: list[BaseModel],
        inputs: list[dict[str, Any]],
        results: list[dict[str, Any]] | None,
        error: str | None = None,
    ) -> None:
        """Log every student locally; trace the call once (one student as itself, a batch as lists)."""
        latency_ms = self.latency_ms()
        inputs = [coarsened(sent) for sent in inputs]  # birth dates cut to the year, in the log and the trace
        outputs, hashes = [], []
        for i, student in enumerate(students):
            output, student_hash = self.log(student, inputs[i], results[i] if results else None, latency_ms, error)
            outputs.append(output)
            hashes.append(student_hash)
        single = self.endpoint == "predict"
        self.services.tracer.record(
            name=self.endpoint,
            request_id=self.request_id,
            inputs=inputs[0] if single else {"students": inputs},
            output=outputs[0] if single else {"predictions": outputs},
            model_version=results[0]["model_version"] if results else None,
            task=self.task,
            latency_ms=latency_ms,
            error=error,
            student_hash=hashes[0] if single else None,
        )


def _score_and_record(
    call: _Call, loaded: Loaded, students: list[BaseModel], inputs: list[dict[str, Any]], reasons: bool
) -> list[dict[str, Any]]:
    results = predict_rows(loaded, inputs, reasons=reasons)
    call.record(students, inputs, results)
    return results


async def _off_the_loop(services: Services, work: Callable[..., _T], *args: Any) -> _T:
    """Run CPU-bound ``work`` in a worker thread, so the event loop keeps answering other requests.

    A batch of 1,000 takes about a second to score; on the loop, every request behind it (the
    liveness probe included) waited that long. The threads are capped per process
    (``Services.scoring``): more would only share the same cores.
    """
    return await anyio.to_thread.run_sync(functools.partial(work, *args), limiter=services.scoring)


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


def _disagreement(services: Services, own: dict[str, str | None]) -> dict[str, Any] | None:
    """Every live worker's versions when one differs from this worker's, else None."""
    others = services.status.others()
    if all(versions == own for versions in others.values()):
        return None
    return {str(pid): versions for pid, versions in {services.status.pid: own, **others}.items()}


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, by header or while streaming, and bodies
    not received within ``timeout_s`` (from the end of the headers) with 408; both close the connection."""

    def __init__(self, app: Callable[..., Awaitable[None]], limit: int, timeout_s: float = 10.0) -> None:
        self.app = app
        self.limit = limit
        self.timeout_s = timeout_s

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._too_large(send)
                return
        # Read the body up to the limit before the app sees it, then replay it.
        chunks: list[bytes] = []
        received = 0
        more = True
        deadline = time.monotonic() + self.timeout_s
        while more:
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                await _refuse(send, 408, b"request body not received within %g s" % self.timeout_s)
                return
            if message["type"] != "http.request":
                await self.app(scope, receive, send)
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.limit:
                await self._too_large(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return dict(await receive())

        await self.app(scope, replay, send)

    async def _too_large(self, send: Callable[..., Any]) -> None:
        await _refuse(send, 413, b"request body over %d bytes" % self.limit)


async def _refuse(send: Callable[..., Any], status_code: int, detail: bytes, *, close: bool = True) -> None:
    """An error answer from the ASGI layer, in the routes' shape; closes the connection when asked."""
    body = b'{"detail":"%s","errors":[]}' % detail
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the rest of the body is not read: the connection cannot carry another request
        headers.append((b"connection", b"close"))
    if status_code == 429:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RateLimit:
    """A token bucket per API key (per client address without one) on the prediction routes.

    With ``PASSOS_API_KEY`` set, the key is checked first: a request without the right key gets
    401 here and touches no bucket, so an unauthenticated flood cannot drain the key's bucket.
    The client address is the socket's peer, or the ``X-Forwarded-For`` of a proxy listed in
    ``PASSOS_FORWARDED_ALLOW_IPS`` (uvicorn resolves it), never a header from anyone else. At most
    ``max_clients`` buckets are kept; the least recently used is dropped in O(1).
    """

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        per_second: float,
        burst: int,
        *,
        api_key: str | None = None,
        max_clients: int = 10_000,
        shared: SharedBuckets | None = None,
    ) -> None:
        self.app = app
        self.per_second = per_second
        self.burst = float(burst)
        self.api_key = api_key
        self.max_clients = max_clients
        self.shared = shared  # every worker's buckets (passos serve); None: this process's own
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/predict"):
            await self.app(scope, receive, send)
            return
        if self.api_key is not None:
            given = next((v for k, v in scope.get("headers", []) if k == b"x-api-key"), b"")
            if not _key_matches(given.decode("latin-1"), self.api_key):
                await _refuse(send, 401, b"unauthorized", close=False)
                return
            client = "api-key"
        else:
            client = "ip:" + str((scope.get("client") or ("unknown", 0))[0])
        if not self.take(client, time.monotonic()):
            await _refuse(send, 429, b"rate limit exceeded", close=False)
            return
        scope[RATE_LIMIT_SCOPE_KEY] = (self, client)  # a batch charges its other students (charge_students)
        await self.app(scope, receive, send)

    def take(self, client: str, now: float, cost: float = 1.0, *, admit: bool = True) -> bool:
        """Take ``cost`` tokens from ``client``'s bucket; False (nothing taken) when it holds less than one.

        ``admit=False`` takes them whatever the bucket holds (it may go below zero).
        """
        if self.shared is not None:  # it reads its own clock, under its lock
            if admit:
                return self.shared.take(client)
            self.shared.charge(client, cost)
            return True
        tokens, last = self.buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.per_second)
        allowed = not admit or tokens >= 1.0
        self.buckets[client] = (tokens - cost if allowed else tokens, now)  # now the most recently used
        if len(self.buckets) > self.max_clients:
            self.buckets.popitem(last=False)  # the least recently used: it would have refilled anyway
        return allowed


def charge_students(request: Request, students: int) -> None:
    """Charge a batch's students beyond the first to its client's bucket (the first paid to get in)."""
    admitted = request.scope.get(RATE_LIMIT_SCOPE_KEY)
    if admitted is not None and students > 1:
        limiter, client = admitted
        limiter.take(client, time.monotonic(), students - 1, admit=False)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service (models load in the lifespan, not here)."""
    current = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services(current)
        for warning in startup_warnings(current):
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

    app = FastAPI(
        title="Passos Mágicos early warning",
        version="1.0",
        description=(
            "Risk of school setback per student. `current`: behind this year; `next_year`: behind next year. "
            "Send any subset of the features; missing ones are treated as unknown and reported."
        ),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    add_offline_docs(app)
    worker = str(os.getpid())

    error_responses: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorResponse, "description": "body is not decodable"},
        422: {"model": ErrorResponse, "description": "a field is invalid or unknown"},
        401: {"model": ErrorResponse, "description": "missing or wrong X-API-Key (when PASSOS_API_KEY is set)"},
        413: {"model": ErrorResponse, "description": "body or batch over the limit"},
        429: {"model": ErrorResponse, "description": "rate limit (PASSOS_RATE_LIMIT_PER_S) exceeded"},
        503: {"model": ErrorResponse, "description": "no model loaded for the task"},
    }

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        errors = []
        found = error.errors()
        for item in found[:MAX_REPORTED_ERRORS]:
            location = [str(p) for p in item.get("loc", ()) if p != "body"]
            if item.get("type") == "json_invalid":
                location = []  # the location is a character offset, not a field
            names = (item.get("ctx") or {}).get("fields")
            if isinstance(names, list):  # a rule across fields (impossible combinations) names each one
                where = ".".join(location)
                named = ", ".join(f"{where}.{name}" if where else str(name) for name in names)
            else:
                named = ".".join(location) or "body"
            message = str(item.get("msg", "invalid value"))
            if item.get("type") == "extra_forbidden" and location:
                hint = did_you_mean(location[-1])
                message = f"unknown field {location[-1]!r}" + (f"; did you mean {hint!r}?" if hint else "")
            errors.append({"field": named, "rule": str(item.get("type", "invalid")), "message": message})
        if len(found) > MAX_REPORTED_ERRORS:
            more = len(found) - MAX_REPORTED_ERRORS
            errors.append({"field": "body", "rule": "too_many_errors", "message": f"{more} more errors not listed"})
        return JSONResponse(status_code=422, content={"detail": "invalid request", "errors": errors})

    app.include_router(ops_router)  # /, /health, the model cards

    @app.get(
        "/ready",
        tags=["ops"],
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "a task has no model"}},
    )
    async def ready(services: ServicesDep) -> JSONResponse:
        """Readiness: 200 only when a model is loaded for every task and every worker serves the same versions."""
        models = services.versions()
        problems = {t: public_problem(p, services.settings) for t, p in services.holder.problems.items()}
        if (workers := _disagreement(services, models)) is not None:
            problems["workers"] = f"the workers serve different versions: {workers}"
        body = {"ready": services.holder.ready() and workers is None, "models": models, "problems": problems}
        return JSONResponse(status_code=200 if body["ready"] else 503, content=body)

    @app.get("/model", tags=["ops"], dependencies=[AuthDep], responses={401: error_responses[401]})
    async def model(services: ServicesDep) -> dict[str, Any]:
        """The champion per task: version, out-of-time metrics (``served_path``: as clients are answered),
        reliability tables, variants, threshold, features."""
        out: dict[str, Any] = {}
        for task in services.holder.tasks:
            loaded = services.holder.get(task)
            meta = loaded.metadata if loaded else {}
            out[task] = {
                "version": loaded.version if loaded else None,
                "loaded_at": loaded.loaded_at if loaded else None,
                "threshold": loaded.threshold if loaded else None,
                "trained_at": meta.get("created_at"),
                "kind": meta.get("kind"),
                "protocol": meta.get("protocol"),
                "metrics": meta.get("metrics"),
                "served_path": meta.get("served_path"),
                "reliability": meta.get("reliability"),
                "threshold_gap": meta.get("threshold_gap"),
                "artifact_check": meta.get("artifact_check"),
                "variants": meta.get("variants"),
                "reference_year": max(meta.get("fit_years") or [0]) or None,
                "features": meta.get("features"),
                "problem": public_problem(p, services.settings) if (p := services.holder.problems.get(task)) else None,
            }
        return out

    @app.post(
        "/predict", tags=["predict"], response_model=Prediction, dependencies=[AuthDep], responses=error_responses
    )
    async def predict(
        body: Annotated[PredictRequest, Body(openapi_examples=PREDICT_EXAMPLES)],  # type: ignore[valid-type]
        services: ServicesDep,
    ) -> FastJSON:
        """Risk for one student. Every field is optional; `task` picks the model (default `current`)."""
        call = _Call(services, "predict", body.task)  # type: ignore[attr-defined]
        inputs = [sent_inputs(body)]
        try:
            loaded = _model_or_503(services, call.task)
        except HTTPException as error:
            call.record([body], inputs, None, str(error.detail))
            raise
        results = predict_rows(loaded, inputs)
        call.record([body], inputs, results)
        result = results[0]
        return FastJSON(result, headers={"x-request-id": call.request_id, WORKER_HEADER: worker})

    @app.post(
        "/predict/batch",
        tags=["predict"],
        response_model=BatchPrediction,
        dependencies=[AuthDep],
        responses=error_responses,
    )
    async def predict_batch(body: BatchRequest, services: ServicesDep, request: Request) -> FastJSON:
        """Risk for many students (at most `PASSOS_BATCH_MAX`, 1,000 by default) with one model."""
        charge_students(request, len(body.students))
        if len(body.students) > services.settings.batch_max:
            raise HTTPException(
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                f"batch of {len(body.students)} students is over the maximum of {services.settings.batch_max}",
            )
        call = _Call(services, "predict_batch", body.task)
        inputs = [sent_inputs(student) for student in body.students]
        try:
            loaded = _model_or_503(services, body.task)
        except HTTPException as error:
            call.record(body.students, inputs, None, str(error.detail))
            raise
        results = await _off_the_loop(
            services, _score_and_record, call, loaded, body.students, inputs, body.include_reasons
        )
        return FastJSON(
            {"task": body.task, "model_version": loaded.version, "predictions": results},
            headers={"x-request-id": call.request_id, WORKER_HEADER: worker},
        )

    app.mount("/reports", StaticFiles(directory=current.reports_dir, html=True, check_dir=False), name="reports")
    app.add_middleware(BodyLimit, limit=current.max_body_bytes, timeout_s=current.body_timeout_s)
    if current.rate_limit_per_s > 0:  # added last: runs first, before the body is read
        app.add_middleware(
            RateLimit,
            per_second=current.rate_limit_per_s,
            burst=current.rate_limit_burst,
            api_key=current.api_key_value(),
            max_clients=current.rate_limit_clients,
            shared=SharedBuckets(
                current.home / "run" / "rate_limit.sqlite",
                per_second=current.rate_limit_per_s,
                burst=current.rate_limit_burst,
                max_clients=current.rate_limit_clients,
            ),
        )
    return app
