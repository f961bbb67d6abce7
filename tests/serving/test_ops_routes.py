"""The service's own pages over real HTTP: the index, the health models in /docs, the cards the reports link to."""

from __future__ import annotations

import re
from urllib.parse import urljoin

from monitoring.report_page import card_link, render_page
from passos import __version__
from tests.support.service import Running

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def test_the_index_names_the_service_and_links_its_pages(service: Running) -> None:
    with service.client() as client:
        answer = client.get("/")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["name"] == "Passos Mágicos early warning" and body["version"] == __version__
        hrefs = {link["href"] for link in body["links"].values()}
        assert {"/docs", "/reports/", "/model"} <= hrefs
        for href in ("/docs", "/health", "/ready"):
            assert client.get(href).status_code == 200, href

        page = client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})  # a browser
        assert page.headers["content-type"].startswith("text/html")
        assert '<a href="/docs">' in page.text and '<a href="/reports/">' in page.text


def test_health_and_ready_have_response_models_and_gets_list_no_422(service: Running) -> None:
    with service.client() as client:
        spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/health", "/ready"):
        schema = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert "$ref" in schema, (path, schema)  # a named model: /docs shows its fields, not "property1"
    status = spec["components"]["schemas"]["Health"]["properties"]["status"]
    assert status.get("const") == "ok" or status.get("enum") == ["ok"], status
    assert set(spec["components"]["schemas"]["Readiness"]["properties"]) == {"ready", "models", "problems"}
    for path in ("/", "/health", "/ready", "/model"):
        assert "422" not in paths[path]["get"]["responses"], path
    assert "422" in paths["/predict"]["post"]["responses"]  # a route with a body still lists it
    card = paths["/models/{task}/{version}/card.md"]["get"]["responses"]["422"]  # as the service answers it
    assert card["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")


def test_a_drift_report_links_to_a_card_that_is_served(service: Running) -> None:
    version = service.registry.champion("next_year")
    assert version is not None
    folder = service.registry.path("next_year", version)
    (folder / "card.md").write_text("# Model card\n\n![ROC](plots/roc.png)\n", encoding="utf-8")
    (folder / "plots").mkdir(exist_ok=True)
    (folder / "plots" / "roc.png").write_bytes(PNG)
    meta = {
        "task": "next_year",
        "verdict": "stable",
        "reasons": [],
        "model_version": version,
        "card_link": card_link("next_year", version),
        "card_path": f"models/next_year/{version}/card.md",
        "check": {},
        "outcomes": [],
    }
    report = service.settings.reports_dir / "drift" / "20261201T000000-next_year-year-abc123"
    report.mkdir(parents=True)
    (report / "report.html").write_text(render_page(meta, None), encoding="utf-8")

    with service.client() as client:
        page_url = f"{service.url}/reports/drift/{report.name}/report.html"
        page = client.get(page_url)
        assert page.status_code == 200
        assert str(service.settings.home) not in page.text  # no path of the machine in a served page
        (href,) = re.findall(r'href="([^"]*card\.md)"', page.text)
        card = client.get(urljoin(page_url, href))
        assert card.status_code == 200, (href, card.text)
        assert card.text.startswith("# Model card") and card.headers["content-type"].startswith("text/markdown")
        plot = client.get(urljoin(str(card.url), "plots/roc.png"))
        assert plot.status_code == 200 and plot.content == PNG

        # read-only and nothing but the card: not the model file beside it, nothing outside the registry
        assert client.post(str(card.url), content=b"x").status_code == 405
        assert client.get(f"/models/next_year/{version}/model.joblib").status_code == 404
        assert client.get(f"/models/next_year/{version}/plots/other.png").status_code == 422
        assert client.get("/models/next_year/..%2F..%2Fid_salt/card.md").status_code in {404, 422}
        assert client.get("/models/next_year/v-missing/card.md").status_code == 404
        assert client.get(f"/models/elsewhere/{version}/card.md").status_code == 422
