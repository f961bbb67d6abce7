"""The prediction routes: ``/predict`` for one student, ``/predict/batch`` for many, with one model.

Every call is logged locally and traced once, off the request path; a batch is scored in a
worker thread so the event loop keeps answering.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
import orjson
from fastapi import APIRouter, Body, HTTPException, Request, status
from fastapi.responses import Response
from pydantic import BaseModel

from features.featuresets import derive, encode, feature_names
from modeling.scoring import answer_rows
from serving.deps import UNAUTHORIZED, AuthDep, Services, ServicesDep
from serving.guards import charge_students
from serving.model_holder import Loaded
from serving.prediction_log import coarsened, hash_student_id
from serving.responses import BatchPrediction, ErrorResponse, Prediction
from serving.schemas import PREDICT_EXAMPLES, BatchRequest, PredictRequest

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


@router.post(
    "/predict/batch",
    tags=["predict"],
    response_model=BatchPrediction,
    dependencies=[AuthDep],
    responses=ERROR_RESPONSES,
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
        headers={"x-request-id": call.request_id, WORKER_HEADER: str(os.getpid())},
    )
