"""What callers meet: docs that work offline, described answers, PEDE spellings and "did you mean"."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from serving.schemas import MAX_REPORTED_ERRORS, did_you_mean
from tests.support.service import Running

pytestmark = pytest.mark.integration
EXAMPLE = {"inde": 7.5, "iaa": 8.0, "ips": 6.5, "ipp": 7.0, "ipv": 7.2, "fase": 3}


class _References(HTMLParser):
    """Every URL a page makes the browser load: src, href, and url strings inside inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        for name, value in attrs:
            if name in ("src", "href", "spec-url") and value:
                self.urls.append(value)

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.urls += re.findall(r"""url:\s*['"]([^'"]+)['"]""", data)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_everything_from_the_service(service: Running, page: str) -> None:
    with service.client() as client:
        response = client.get(page)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        html = response.text
        assert "http://" not in html and "https://" not in html and "//cdn" not in html
        parser = _References()
        parser.feed(html)
        assert len(parser.urls) >= 3, parser.urls  # script, favicon, and the OpenAPI document
        for url in parser.urls:
            assert url.startswith("/"), url
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 1000, url
    if page == "/docs":
        assert '"validatorUrl": null' in html  # Swagger UI's validator badge would call validator.swagger.io


def test_every_response_field_is_described_with_an_example(service: Running) -> None:
    with service.client() as client:
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for model in ("Prediction", "Reason", "BatchPrediction", "ErrorDetail", "ErrorResponse"):
        for name, prop in schemas[model]["properties"].items():
            assert prop.get("description"), f"{model}.{name} has no description"
            if model != "BatchPrediction" or name != "predictions":
                assert prop.get("examples") or model == "ErrorResponse", f"{model}.{name} has no example"
    assert schemas["Prediction"]["properties"]["risk_label"]["examples"] == ["low"]


@pytest.mark.parametrize(
    ("raw", "same_as"),
    [
        ({"fase": "ALFA"}, {"fase": 0}),
        ({"fase": "FASE 3"}, {"fase": 3}),
        ({"fase": "7E"}, {"fase": 7}),
        ({"genero": "Feminino"}, {"genero": "F"}),
        ({"genero": "Menina"}, {"genero": "F"}),
        ({"genero": "MASCULINO"}, {"genero": "M"}),
        ({"instituicao": "Escola Pública"}, {"instituicao": "publica"}),
        ({"instituicao": "Rede Decisão"}, {"instituicao": "privada_bolsa"}),
        ({"iaa": 10.002}, {"iaa": 10}),
        ({"ida": 10.01}, {"ida": 10}),
    ],
)
def test_the_api_accepts_the_spellings_ingestion_accepts(
    service: Running, raw: dict[str, object], same_as: dict[str, object]
) -> None:
    base = {"idade": 13, "iaa": 8.0, "ida": 5.5, "ieg": 7.0}
    with service.client() as client:
        given = client.post("/predict", json=base | raw)
        expected = client.post("/predict", json=base | same_as)
    assert given.status_code == 200, given.text
    assert given.json()["risk_score"] == expected.json()["risk_score"]
    assert given.json()["missing"] == expected.json()["missing"]


@pytest.mark.parametrize(
    ("raw", "rule", "says"),
    [
        ({"fase": "Fase três"}, "fase_spelling", "ALFA, FASE 3, 7E"),
        ({"genero": "X"}, "literal_error", "feminino"),
        ({"instituicao": "escola particular"}, "literal_error", "escola publica"),
        ({"iaa": 10.06}, "less_than_equal", "10.05"),
        ({"iaa": "7.5"}, "float_type", "number"),
    ],
)
def test_a_spelling_it_does_not_know_is_refused_saying_which_it_wants(
    service: Running, raw: dict[str, object], rule: str, says: str
) -> None:
    with service.client() as client:
        response = client.post("/predict", json=raw)
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["field"] == next(iter(raw)) and error["rule"] == rule
    assert says in error["message"], error


def test_an_unknown_field_gets_a_did_you_mean(service: Running) -> None:
    with service.client() as client:
        single = client.post("/predict", json={"fse": 3})
        batch = client.post("/predict/batch", json={"students": [EXAMPLE, {"Gênero": "F"}]})
        far = client.post("/predict", json={"xyzzy": 1})
    assert single.status_code == 422
    assert single.json() == {
        "detail": "invalid request",
        "errors": [{"field": "fse", "rule": "extra_forbidden", "message": "unknown field 'fse'; did you mean 'fase'?"}],
    }
    assert batch.json()["errors"][0]["field"] == "students.1.Gênero"
    assert batch.json()["errors"][0]["message"].endswith("did you mean 'genero'?")
    assert far.json()["errors"][0]["message"] == "unknown field 'xyzzy'"


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("fse", "fase"),
        ("idad", "idade"),
        ("INDE 2024", "inde"),
        ("IAA", "iaa"),
        ("Matem", "mat"),
        ("nota", None),
        ("Task", "task"),
        ("task", None),  # sent per student in a batch: "did you mean 'task'?" would name the field itself
    ],
)
def test_did_you_mean(name: str, hint: str | None) -> None:
    assert did_you_mean(name) == hint


def test_did_you_mean_is_cheap_for_a_batch_of_repeated_or_long_unknown_fields() -> None:
    """A batch of 1,000 students with 20 unknown fields each asks it 20,000 times on the event loop."""
    did_you_mean.cache_clear()
    for _ in range(1000):
        assert did_you_mean("fse_typo_of_a_field") is None
    assert did_you_mean.cache_info().misses == 1
    assert did_you_mean("Gênero") == "genero" and did_you_mean("f" * 10_000) is None


def test_a_422_lists_a_bounded_number_of_errors_then_how_many_more(service: Running) -> None:
    """20,000 errors formatted one by one on the event loop stalled /health for seconds."""
    students = [{f"f{s}_{i}": 1 for i in range(10)} for s in range(50)]
    with service.client() as client:
        response = client.post("/predict/batch", json={"students": students})
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert len(errors) == MAX_REPORTED_ERRORS + 1
    assert errors[0] == {"field": "students.0.f0_0", "rule": "extra_forbidden", "message": "unknown field 'f0_0'"}
    assert errors[-1] == {
        "field": "body",
        "rule": "too_many_errors",
        "message": f"{500 - MAX_REPORTED_ERRORS} more errors not listed",
    }
