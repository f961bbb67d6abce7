"""The prediction routes: ``/predict`` for one student, ``/predict/batch`` for many, with one model.

Every call is logged locally and traced once, off the request path; a batch is validated and
scored in a worker thread so the event loop keeps answering.
"""

from __future__ import annotations

import email.message
import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
import orjson
from fastapi import APIRouter, Body, FastAPI, HTTPException, Request, status
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError, create_model

from features.featuresets import derive, encode, feature_names
from modeling.scoring import answer_rows
from serving.deps import UNAUTHORIZED, AuthDep, Services, ServicesDep
from serving.guards import charge_students
from serving.model_holder import Loaded
from serving.prediction_log import coarsened, hash_student_id
from serving.responses import (
    BatchPrediction,
    ErrorResponse,
    InvalidRequest,
    Prediction,
    error_entries,
    unreadable_message,
)
from serving.schemas import (
    BATCH_MAX,
    MAX_REPORTED_ERRORS,
    PREDICT_EXAMPLES,
    BatchRequest,
    PredictRequest,
    StudentFeatures,
)

NOT_FEATURES = frozenset({"task", "student_id", "year", "ano_ingresso", "data_nasc", "ano_nasc"})
# Which worker process answered (`passos serve --workers N`): a header on the prediction routes.
WORKER_HEADER = "x-worker-pid"
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "a field is invalid or unknown, or the body is not JSON"},
    401: UNAUTHORIZED,
    413: {"model": ErrorResponse, "description": "body or batch over the limit"},
    429: {"model": ErrorResponse, "description": "rate limit (PASSOS_RATE_LIMIT_PER_S) exceeded"},
    503: {"model": ErrorResponse, "description": "no model loaded for the task"},
}
_T = TypeVar("_T")

router = APIRouter()


class FastJSON(Response):
    """JSON rendered by orjson, for the prediction routes (no re-validation of our own output)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


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


@router.post("/predict", tags=["predict"], response_model=Prediction, dependencies=[AuthDep], responses=ERROR_RESPONSES)
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
    return FastJSON(result, headers={"x-request-id": call.request_id, WORKER_HEADER: str(os.getpid())})


def _is_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of this content type as JSON (``application/json`` or ``application/*+json``)."""
    if not content_type:
        return False  # FastAPI's strict content type: no header, no JSON
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


# The batch without its students checked: they are validated one by one (see parse_batch).
_BatchEnvelope = create_model(
    "BatchRequest", __base__=BatchRequest, students=(list[Any], Field(min_length=1, max_length=BATCH_MAX))
)


def parse_batch(body: bytes, content_type: str | None) -> BatchRequest:
    """The body of ``/predict/batch`` read and validated as FastAPI reads a declared body, off the event loop.

    1,000 students with twenty unknown fields each are 20,000 errors. Validated on the loop, every
    request behind them (the liveness probe included) waited; in a worker thread, one long call
    into pydantic still holds the interpreter. So each student is validated on its own (the loop
    gets its turns in between) and only the errors a 422 lists are built; the rest are counted.

    Raises:
        InvalidRequest: the body is missing, not JSON, or not a valid batch (the app's 422).
    """
    if not body:
        raise InvalidRequest(error_entries([{"type": "missing", "loc": ("body",), "msg": "Field required"}]))
    data: Any = body
    if _is_json(content_type):
        try:
            data = json.loads(body)
        except json.JSONDecodeError:
            raise InvalidRequest(error_entries([{"type": "json_invalid", "msg": "JSON decode error"}])) from None
        except (UnicodeDecodeError, RecursionError) as error:
            raise InvalidRequest(error_entries([{"type": "json_invalid", "msg": unreadable_message(error)}])) from None
    try:
        envelope = _BatchEnvelope.model_validate(data, from_attributes=True)  # as FastAPI validates a body
    except ValidationError as error:
        raise InvalidRequest(error_entries(error.errors(include_url=False))) from None
    students: list[BaseModel] = []
    found: list[dict[str, Any]] = []
    total = 0
    for i, raw in enumerate(envelope.students):
        try:
            students.append(StudentFeatures.model_validate(raw, from_attributes=True))
        except ValidationError as error:
            total += error.error_count()
            if len(found) < MAX_REPORTED_ERRORS:
                found += [{**item, "loc": ("students", i, *item["loc"])} for item in error.errors(include_url=False)]
    if total:
        raise InvalidRequest(error_entries(found, total))
    return BatchRequest.model_construct(task=envelope.task, students=students, include_reasons=envelope.include_reasons)


BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchRequest"}}},
    }
}


def publish_batch_request(app: FastAPI) -> None:
    """Put ``BatchRequest`` in ``/openapi.json``: its route reads the body itself, so FastAPI does not see the model.

    The schemas are FastAPI's own for a route that declares the model, so ``/docs`` is as it was.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            declared = APIRouter()
            declared.add_api_route("/predict/batch", _declares_batch, methods=["POST"], responses=ERROR_RESPONSES)
            components = get_openapi(title=app.title, version=app.version, routes=declared.routes)["components"]
            known = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in components["schemas"].items():
                known.setdefault(name, definition)
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]


def _declares_batch(body: BatchRequest) -> None:
    """Never called: the batch body as a declared parameter, for the schemas FastAPI publishes for it."""


@router.post(
    "/predict/batch",
    tags=["predict"],
    response_model=BatchPrediction,
    dependencies=[AuthDep],
    responses=ERROR_RESPONSES,
    openapi_extra=BATCH_BODY,
)
async def predict_batch(services: ServicesDep, request: Request) -> FastJSON:
    """Risk for many students (at most `PASSOS_BATCH_MAX`, 1,000 by default) with one model."""
    body = await _off_the_loop(services, parse_batch, await request.body(), request.headers.get("content-type"))
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
        headers={"x-request-id": call.request_id, WORKER_HEADER: str(os.getpid())},
    )
