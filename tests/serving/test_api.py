"""The API over real HTTP: answers, contracts, and a clear 4xx for every kind of bad request."""

from __future__ import annotations

import json
import time

import pytest

from modeling.registry import RESERVED_KEYS
from modeling.scoring import family
from serving.prediction_log import read_records
from tests.support.net import wait_until
from tests.support.service import Running

pytestmark = pytest.mark.integration
EXAMPLE = {"inde": 7.5, "iaa": 8.0, "ips": 6.5, "ipp": 7.0, "ipv": 7.2, "fase": 3}


def test_the_original_example_payload_is_answered(service: Running) -> None:
    with service.client() as client:
        response = client.post("/predict", json=EXAMPLE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert 0.0 <= body["risk_score"] <= 1.0
    assert body["risk_label"] in ("high", "low")
    assert body["risk_label"] == ("high" if body["risk_score"] >= body["threshold"] else "low")
    assert body["task"] == "current"
    assert body["model_version"] == service.registry.champion("current")
    assert body["ignored"] == ["inde"]  # the current task may not use INDE (leakage policy)
    # Answered by the variant trained for exactly these fields, never by a model that reads
    # the missing age as zero; the answer says which, and how well it did out of time.
    assert body["variant"] == "example" and body["variant_recall"] == 0.91 and body["variant_precision"] == 0.6
    assert body["missing"] == [] and body["needed"] == []
    assert 0.0 <= body["percentile"] <= 100.0
    assert all(r["feature"] in EXAMPLE for r in body["reasons"])
    assert body["known_importance"] == pytest.approx(1.0)  # the answering variant uses only these fields
    assert response.headers["x-request-id"]


@pytest.mark.parametrize("payload", [{}, {"iaa": 8.0, "ips": 6.5}, {"task": "next_year"}])
def test_a_request_too_thin_for_any_model_is_unknown_not_low(service: Running, payload: dict) -> None:
    with service.client() as client:
        response = client.post("/predict", json=payload)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["risk_label"] == "unknown" and body["risk_score"] is None and body["variant"] is None
    assert body["threshold"] is None and body["reasons"] == []
    assert "fase" in body["needed"]  # what to send: the smallest validated variant's required fields
    assert not set(body["needed"]) & set(payload)  # never a field that was sent


def test_a_score_exactly_at_the_threshold_is_high(service: Running) -> None:
    """Over HTTP too, ``high`` is ``risk_score >= threshold``: a student exactly at the cut is flagged."""
    with service.client() as client:
        first = client.post("/predict", json=EXAMPLE).json()
    registry = service.registry
    champion = registry.champion("current")
    assert champion is not None
    model, metadata = registry.load_checked("current", champion)
    for bundle in family(model):
        bundle.metadata["segment_thresholds"] = None
        if bundle.variant == first["variant"]:
            bundle.threshold = first["risk_score"]  # the answering variant's cut on this very score
    at_cut = registry.save("current", model, {k: v for k, v in metadata.items() if k not in RESERVED_KEYS})
    registry.promote("current", at_cut, reason="a cut exactly on the example's score")
    with service.client() as client:
        wait_until(lambda: client.get("/model").json()["current"]["version"] == at_cut, what="the new champion served")
        body = client.post("/predict", json=EXAMPLE).json()
    assert body["model_version"] == at_cut and body["variant"] == first["variant"] and body["segment"] is None
    assert body["risk_score"] == body["threshold"] == first["risk_score"]
    assert body["risk_label"] == "high"


def test_the_full_model_answers_a_complete_student(service: Running) -> None:
    student = EXAMPLE | {"idade": 14, "genero": "M", "instituicao": "publica", "ida": 4.0, "ieg": 6.0}
    with service.client() as client:
        body = client.post("/predict", json=student).json()
    assert body["variant"] == "full" and body["variant_recall"] == 0.95
    assert body["risk_label"] == ("high" if body["risk_score"] >= body["threshold"] else "low")
    assert all(r["value"] is not None for r in body["reasons"])


def test_next_year_uses_inde_and_derives_age_features(service: Running) -> None:
    payload = EXAMPLE | {
        "task": "next_year",
        "idade": 12,
        "year": 2024,
        "data_nasc": "2012-06-17",
        "ano_ingresso": 2020,
    }
    with service.client() as client:
        body = client.post("/predict", json=payload).json()
    assert body["task"] == "next_year" and body["ignored"] == []
    for derived in ("idade_ref", "fase_esperada", "atraso_esperado", "anos_no_programa", "idade_menos_fase"):
        assert derived not in body["missing"]
    assert all(r["contribution"] > 0 for r in body["reasons"])


def test_batch_answers_each_student_in_order(service: Running) -> None:
    students = [EXAMPLE | {"ida": float(i)} for i in range(10)]
    with service.client() as client:
        response = client.post("/predict/batch", json={"students": students})
        singles = [client.post("/predict", json=s).json()["risk_score"] for s in students]
    assert response.status_code == 200
    body = response.json()
    assert [p["risk_score"] for p in body["predictions"]] == pytest.approx(singles)


def test_health_ready_and_model(service: Running) -> None:
    with service.client() as client:
        assert client.get("/health").json() == {"status": "ok"}
        ready = client.get("/ready")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        model = client.get("/model").json()
    assert model["current"]["version"] == service.registry.champion("current")
    assert model["next_year"]["features"][0]["name"] == "fase"
    assert model["current"]["metrics"]["test"]["recall"] == 0.95


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ('{"iaa": NaN}', "iaa", "finite_number"),
        ('{"iaa": Infinity}', "iaa", "finite_number"),
        ('{"iaa": "7.5"}', "iaa", "float_type"),
        ('{"iaa": 11}', "iaa", "less_than_equal"),
        ('{"fase": -1}', "fase", "greater_than_equal"),
        ('{"genero": "X"}', "genero", "literal_error"),
        ('{"nota": 5}', "nota", "extra_forbidden"),
        ('{"task": "someday"}', "task", "literal_error"),
        ("[1, 2]", "body", "model_attributes_type"),
        ("{", "body", "json_invalid"),
        ("", "body", "missing"),
    ],
)
def test_bad_requests_get_a_422_naming_the_field_and_rule(service: Running, body: str, field: str, rule: str) -> None:
    with service.client() as client:
        response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert any(e["field"].split(".")[0] == field.split(".")[0] and e["rule"] == rule for e in errors), errors


def test_oversized_bodies_and_batches(service: Running) -> None:
    with service.client() as client:
        huge = client.post(
            "/predict", content=b'{"iaa": 1' + b" " * 30_000 + b"}", headers={"content-type": "application/json"}
        )
        assert huge.status_code == 413 and "over 20000 bytes" in huge.json()["detail"]

        def chunks():  # no content-length: the limit is enforced while streaming
            yield b'{"iaa": 1'
            for _ in range(40):
                yield b" " * 1000
            yield b"}"

        streamed = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        too_many = client.post("/predict/batch", json={"students": [EXAMPLE] * 51})
        assert too_many.status_code == 413 and "maximum of 50" in too_many.json()["detail"]
        over_schema = client.post("/predict/batch", json={"students": [{}] * 1001})
        assert over_schema.status_code in (413, 422)
        empty = client.post("/predict/batch", json={"students": []})
        assert empty.status_code == 422


def test_api_key_protects_predictions_but_not_health(model_home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from passos.settings import Settings
    from tests.support.service import start_server

    home = tmp_path / "home"
    shutil.copytree(model_home, home)
    server, thread, url = start_server(Settings(home=home, api_key="s3cret"))
    try:
        import httpx

        with httpx.Client(base_url=url) as client:
            assert client.get("/health").status_code == 200
            denied = client.post("/predict", json=EXAMPLE)
            assert denied.status_code == 401 and denied.json() == {"detail": "unauthorized", "errors": []}
            assert client.get("/model").status_code == 401
            assert client.post("/predict", json=EXAMPLE, headers={"x-api-key": "wrong"}).status_code == 401
            assert client.post("/predict", json=EXAMPLE, headers={"x-api-key": "s3cret"}).status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_every_prediction_is_logged_without_the_student_id(service: Running) -> None:
    with service.client() as client:
        client.post("/predict", json=EXAMPLE | {"student_id": "RA-1234"})
        client.post("/predict/batch", json={"students": [EXAMPLE, EXAMPLE | {"student_id": "RA-99"}]})
    deadline = time.monotonic() + 5
    records: list[dict[str, object]] = []
    while time.monotonic() < deadline and len(records) < 3:
        records = list(read_records(service.settings.predictions_dir))
        time.sleep(0.05)
    assert [r["endpoint"] for r in records] == ["predict", "predict_batch", "predict_batch"]
    assert records[0]["student_hash"] and records[0]["inputs"]["iaa"] == 8.0  # type: ignore[index]
    text = "".join(p.read_text() for p in service.settings.predictions_dir.glob("*.jsonl"))
    assert "RA-1234" not in text and "RA-99" not in text
    assert json.loads(text.splitlines()[0])["model_version"] == service.registry.champion("current")


def test_docs_and_openapi_are_served(service: Running) -> None:
    with service.client() as client:
        assert client.get("/docs").status_code == 200
        schema = client.get("/openapi.json").json()
    request = schema["components"]["schemas"]["PredictRequest"]
    assert request["properties"]["iaa"]["anyOf"][0]["maximum"] == 10.05  # rounding noise, clipped to 10
    assert request["additionalProperties"] is False


def test_rate_limit_per_client(model_home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    import httpx

    from passos.settings import Settings
    from tests.support.service import start_server

    home = tmp_path / "home"
    shutil.copytree(model_home, home)
    server, thread, url = start_server(Settings(home=home, rate_limit_per_s=1.0, rate_limit_burst=5))
    try:
        with httpx.Client(base_url=url) as client:
            codes = [client.post("/predict", json=EXAMPLE).status_code for _ in range(8)]
            assert client.get("/health").status_code == 200  # not limited
        assert codes[:5] == [200] * 5 and 429 in codes[5:]
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_no_student_id_or_name_in_logs_or_the_prediction_log(
    service: Running, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    secret = "RA-SECRET-4711"
    with caplog.at_level(logging.DEBUG), service.client() as client:
        client.post("/predict", json=EXAMPLE | {"student_id": secret})
        client.post("/predict/batch", json={"students": [EXAMPLE | {"student_id": secret}]})
        named = client.post("/predict", json=EXAMPLE | {"nome": "Maria da Silva"})
        time.sleep(0.3)
    assert named.status_code == 422  # names are not accepted at all
    service.server.should_exit = True  # flush the prediction log on shutdown
    time.sleep(0.5)
    written = "".join(p.read_text() for p in service.settings.predictions_dir.glob("*.jsonl"))
    assert written and secret not in written and "Maria" not in written
    assert secret not in caplog.text and "Maria" not in caplog.text
