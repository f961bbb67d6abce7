"""A body that cannot be read as JSON gets the API's 4xx shape, on a real uvicorn server.

Bytes that are not UTF-8 and JSON nested deeper than the parser goes are malformed bodies, like
any other: 422 with ``{"detail", "errors"}`` naming the body and the rule ``json_invalid``. Every
other error the service raises keeps that shape too (``errors`` empty when no field is at fault).
"""

from __future__ import annotations

import pytest

from serving.responses import unreadable_message
from tests.support.service import Running

ROUTES = ["/predict", "/predict/batch"]
JSON = {"content-type": "application/json"}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"fase": "\xff\xfe"}', "body is not UTF-8: byte 0xff at offset 10"),
        ('{"genero": "Menino é"}'.encode("latin-1"), "body is not UTF-8: byte 0xe9 at offset 19"),
        (b"[" * 5_000 + b"]" * 5_000, "JSON nested too deep"),
        (b'{"a":' * 3_000 + b"1" + b"}" * 3_000, "JSON nested too deep"),
    ],
    ids=["invalid-utf8", "latin-1", "deep-array", "deep-object"],
)
def test_an_unreadable_body_is_a_422_in_the_api_shape(service: Running, route: str, body: bytes, message: str) -> None:
    with service.client() as client:
        answer = client.post(route, content=body, headers=JSON)
        assert answer.status_code == 422, answer.text
        assert answer.json() == {
            "detail": "invalid request",
            "errors": [{"field": "body", "rule": "json_invalid", "message": message}],
        }
        assert client.get("/health").status_code == 200  # and the service goes on


def test_every_error_of_the_service_has_the_same_shape(service: Running) -> None:
    with service.client() as client:
        for answer, status in [
            (client.get("/no-such-route"), 404),
            (client.get("/predict"), 405),
            (client.get("/models/current/v0/card.md"), 404),
        ]:
            assert answer.status_code == status, answer.text
            assert set(answer.json()) == {"detail", "errors"} and answer.json()["errors"] == []
        assert client.get("/predict").headers["allow"] == "POST"  # what the default handler sends, kept


def test_an_unreadable_body_says_why() -> None:
    assert unreadable_message(RecursionError()) == "JSON nested too deep"
    assert unreadable_message(ValueError("anything else")) == "body is not readable JSON"
