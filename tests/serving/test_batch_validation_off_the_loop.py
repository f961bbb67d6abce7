"""A batch is validated off the event loop, like its scoring: `/health` answers while big batches are checked.

Against a real `passos serve` on loopback. The batches sent are the costliest to validate within
the body limit: 1,000 students, each with twenty unknown fields (20,000 errors, each looked up for
the closest known field). Validated on the loop, every other request waited behind whole batches.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from passos.settings import Settings
from serving.app import create_app
from serving.predict_routes import parse_batch
from serving.responses import InvalidRequest, error_entries
from serving.schemas import FULL_EXAMPLE, BatchRequest
from tests.serving.test_floods import Served, home
from tests.serving.test_load_isolation import defaults, health_under_batches

__all__ = ["defaults", "home"]  # the fixtures, re-used

STUDENT = {k: v for k, v in FULL_EXAMPLE.items() if k != "task"}
UNKNOWN = {f"campo_{j}": j for j in range(20)}


@pytest.mark.integration
def test_health_stays_fast_while_four_clients_send_batches_that_fail_validation(defaults: Served) -> None:
    batch = {"task": "current", "students": [dict(STUDENT, **UNKNOWN) for _ in range(1000)]}
    p50, batch_p50 = health_under_batches(defaults.url, batch, 422, warm=4)
    # Validated on the event loop, /health waited behind whole batches: p50 0.43 to 0.46 s (a batch:
    # 0.7 s); off it, 0.05 to 0.06 s (a batch: 0.3 to 0.45 s, as fewer errors are built).
    assert p50 < 0.15 and p50 < batch_p50 / 2, f"/health p50 {p50:.3f} s under load (a batch: {batch_p50:.3f} s)"


def _as_declared(body: dict[str, Any]) -> list[dict[str, str]]:
    """The 422 entries a body declared as ``BatchRequest`` got from FastAPI's own validation."""
    try:
        BatchRequest.model_validate(body, from_attributes=True)  # as FastAPI validates a declared body
    except ValidationError as error:
        return error_entries([{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False)])
    return []


@pytest.mark.parametrize(
    "body",
    [
        {"students": [dict(STUDENT, **UNKNOWN) for _ in range(1000)]},
        {
            "students": [
                STUDENT,
                {"iaa": "high"},
                {"fase": 99, "fse": 3},
                7,
                {"idade": 30, "ano_nasc": 2010, "year": 2024},
            ]
        },
        {"task": "current", "students": [{"iaa": float("inf")}], "include_reasons": True},
        {"task": "tomorrow", "students": [STUDENT]},
        {"students": []},
        {"students": [STUDENT] * 1001},
        {"students": [STUDENT], "include_reasons": "yes"},
        {"students": [STUDENT], "fase": 3},
        {"students": "everyone"},
        {},
    ],
    ids=[
        "many-unknown",
        "mixed",
        "infinite",
        "bad-task",
        "empty",
        "too-many",
        "strict-bool",
        "extra",
        "not-a-list",
        "no-students",
    ],
)
def test_a_batch_gets_the_errors_it_got_as_a_declared_body(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_batch(json.dumps(body).encode(), "application/json")
    assert refused.value.errors == _as_declared(body)


def test_a_valid_batch_is_the_declared_model() -> None:
    body = {"task": "next_year", "students": [STUDENT, {"iaa": 7}], "include_reasons": False}
    parsed = parse_batch(json.dumps(body).encode(), "application/json; charset=utf-8")
    assert parsed.model_dump() == BatchRequest.model_validate(body).model_dump()
    assert parse_batch(json.dumps(body).encode(), "application/vnd.passos+json").model_dump() == parsed.model_dump()


@pytest.mark.parametrize(
    ("body", "content_type", "rule", "message"),
    [
        (b"", "application/json", "missing", "Field required"),
        (b'{"students": [', "application/json", "json_invalid", "JSON decode error"),
        (b'{"students": ["\xff"]}', "application/json", "json_invalid", "body is not UTF-8: byte 0xff at offset 15"),
        (b"[" * 5000 + b"]" * 5000, "application/json", "json_invalid", "JSON nested too deep"),
        (
            b'{"students": [{}]}',
            "text/plain",
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
        ),
        (
            b'{"students": [{}]}',
            None,
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
        ),
    ],
    ids=["empty", "bad-json", "not-utf8", "too-deep", "text-plain", "no-content-type"],
)
def test_a_body_that_is_not_a_json_batch_is_one_error(
    body: bytes, content_type: str | None, rule: str, message: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_batch(body, content_type)
    assert refused.value.errors == [{"field": "body", "rule": rule, "message": message}]


def test_the_batch_route_still_publishes_its_body() -> None:
    schema = create_app(Settings(home=Path("/nonexistent-passos-home"))).openapi()
    body = schema["paths"]["/predict/batch"]["post"]["requestBody"]
    assert body == {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchRequest"}}},
    }
    students = schema["components"]["schemas"]["BatchRequest"]["properties"]["students"]
    assert students["items"] == {"$ref": "#/components/schemas/StudentFeatures"}
    assert "iaa" in schema["components"]["schemas"]["StudentFeatures"]["properties"]
