"""The client contract per task, as /openapi.json publishes it and the service keeps it."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from features.featuresets import DERIVED
from features.harmonise import label_spellings
from serving.schemas import EXAMPLE, FULL_EXAMPLE, FULL_EXAMPLE_NEXT_YEAR, PredictRequest
from tests.support.service import Running

pytestmark = pytest.mark.integration

ACCEPTED_FIELDS = set(PredictRequest.model_fields) - {"task", "student_id"}
# Spellings of the sheets (2022-2024) and of people typing them.
GENERO = ["F", "M", "Feminino", "Masculino", "Menina", "Menino", "FEMININO", "menino", " Menina ", "feminino"]
INSTITUICAO = [
    "publica",
    "privada_bolsa",
    "privada",
    "universidade",
    "concluiu",
    "outra",
    "Escola Pública",
    "Pública",
    "PÚBLICA",
    "escola   publica",
    "  Escola  Pública ",
    "Rede Decisão",
    "Escola JP II",
    "Privada - Programa de Apadrinhamento",
    "Privada - Programa de apadrinhamento",
    "Privada *Parcerias com Bolsa 100%",
    "Privada - Pagamento por *Empresa Parceira",
    "Bolsista Universitário *Formado (a)",
    "Concluiu o 3º EM",
    "Concluiu o 3o EM",
    "Nenhuma das opções acima",
    "Privada",
]
FASE: list[Any] = [0, 3, 9, 7.0, "ALFA", "alfa", "FASE 3", "Fase 8", "7E", "4M", "9", " 2 "]


def openapi_validator(openapi: dict[str, Any], name: str = "PredictRequest") -> Draft202012Validator:
    """A JSON Schema 2020-12 validator of one published component (its $refs resolved in the document)."""
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": openapi["components"]})


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    from passos.settings import Settings
    from serving.app import create_app

    return create_app(Settings(home=Path("/nonexistent-passos-home"))).openapi()


def test_every_accepted_spelling_validates_against_the_published_schema(openapi: dict[str, Any]) -> None:
    validator = openapi_validator(openapi)
    spellings = [("genero", v) for v in GENERO] + [("instituicao", v) for v in INSTITUICAO]
    spellings += [("fase", v) for v in FASE]
    for group in ("genero", "instituicao"):  # every label the service knows, as compared and title-cased
        spellings += [(group, label) for label in label_spellings(group)]
        spellings += [(group, label.title()) for label in label_spellings(group)]
    for name, value in spellings:
        PredictRequest.model_validate({name: value})  # the service accepts it ...
        errors = [e.message for e in validator.iter_errors({name: value})]
        assert not errors, (name, value, errors)  # ... and so does a client built from /openapi.json


@pytest.mark.parametrize(("name", "value"), [("genero", "X"), ("genero", "Fem1nino"), ("instituicao", "escola")])
def test_a_spelling_the_schema_refuses_the_service_refuses(openapi: dict[str, Any], name: str, value: str) -> None:
    assert list(openapi_validator(openapi).iter_errors({name: value}))
    with pytest.raises(ValueError, match=name):
        PredictRequest.model_validate({name: value})


@pytest.mark.data
def test_every_label_in_the_real_sheets_is_published(openapi: dict[str, Any], real_data: Path) -> None:
    validator = openapi_validator(openapi)
    seen: set[tuple[str, str]] = set()
    for path in sorted(real_data.glob("pede_*.csv")):
        with path.open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                seen.add(("genero", row.get("Gênero", "")))
                seen.add(("instituicao", row.get("Instituição de ensino", "")))
    values = sorted((n, v) for n, v in seen if v.strip())
    assert len(values) >= 8
    for name, value in values:
        PredictRequest.model_validate({name: value})
        assert not list(validator.iter_errors({name: value})), (name, value)


def test_openapi_opens_with_a_complete_example_per_task_that_the_full_variant_answers(service: Running) -> None:
    with service.client() as client:
        openapi = client.get("/openapi.json").json()
        examples = openapi["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["examples"]
        listed = [e["value"] for e in examples.values()]
        assert [e.get("task") for e in listed[:2]] == ["current", "next_year"]
        assert listed[:2] == [FULL_EXAMPLE, FULL_EXAMPLE_NEXT_YEAR]
        assert openapi["components"]["schemas"]["PredictRequest"]["examples"][:2] == listed[:2]
        validator = openapi_validator(openapi)
        for example in listed:
            assert not list(validator.iter_errors(example))
        answers = [client.post("/predict", json=example).json() for example in listed[:2]]
    for example, answer in zip(listed, answers, strict=False):
        assert answer["task"] == example["task"] and answer["variant"] == "full", answer
        assert answer["upgrade"] is None and answer["missing"] == []


def test_a_lesser_variant_says_what_would_let_the_full_one_answer(service: Running) -> None:
    with service.client() as client:
        lesser = client.post("/predict", json=EXAMPLE).json()
        upgrade = lesser["upgrade"]
        assert lesser["variant"] == "example" and upgrade["variant"] == "full"
        assert upgrade["add"] == ["idade", "genero", "instituicao"]  # idade_menos_fase is asked for as idade
        full = client.post("/predict", json=EXAMPLE | {"idade": 14, "genero": "M", "instituicao": "publica"}).json()
    assert full["variant"] == "full" and full["upgrade"] is None
    assert (upgrade["recall"], upgrade["precision"]) == (full["variant_recall"], full["variant_precision"])


def _subsets() -> list[dict[str, Any]]:
    fields = [k for k in FULL_EXAMPLE_NEXT_YEAR if k != "task"]
    out = [{}]
    for size in (1, 2, 5, 9, len(fields) - 1):
        out += [
            {k: FULL_EXAMPLE_NEXT_YEAR[k] for k in combo}
            for combo in itertools.islice(itertools.combinations(fields, size), 0, None, 97)
        ][:6]
    return out


@pytest.mark.parametrize("task", ["current", "next_year"])
def test_missing_needed_and_upgrade_name_only_fields_a_client_can_send(service: Running, task: str) -> None:
    with service.client() as client:
        for sent in _subsets():
            body = client.post("/predict", json=sent | {"task": task}).json()
            named = set(body["missing"]) | set(body["needed"]) | set((body["upgrade"] or {}).get("add", []))
            assert named <= ACCEPTED_FIELDS and not named & DERIVED, (sent, body)
            assert not named & set(sent), (sent, body)  # never a field that was sent
            if body["needed"]:  # sending what was asked for is accepted, and answered
                again = client.post(
                    "/predict", json=sent | {k: FULL_EXAMPLE_NEXT_YEAR[k] for k in body["needed"]} | {"task": task}
                )
                assert again.status_code == 200 and again.json()["risk_label"] != "unknown", again.text
