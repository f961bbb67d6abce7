"""Property-based fuzzing of the API from its own OpenAPI schema (schemathesis) on a real server.

Every endpoint, ~250 generated cases each (over 1,000 a run): never a 5xx, and every answer
conforms to the schema (status codes, content types, bodies).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from passos.settings import Settings
from serving.app import create_app
from tests.support.service import Running, start_server

pytestmark = pytest.mark.integration
CASES_PER_OPERATION = 250
CALLS: list[int] = []


@pytest.fixture(scope="module")
def fuzz_service(model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server for the whole fuzzing run, with the default limits (the ones the schema states)."""
    import shutil

    home = tmp_path_factory.mktemp("fuzz") / "home"
    shutil.copytree(model_home, home)
    server, thread, url = start_server(Settings(home=home))
    yield url
    server.should_exit = True
    thread.join(timeout=10)


# The schema the service publishes at /openapi.json (built without starting it; a test below
# checks the running server serves the same document).
schema = schemathesis.openapi.from_dict(create_app(Settings(home=Path(tempfile.gettempdir()))).openapi())


@schema.parametrize()
@settings(
    max_examples=CASES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_never_fails_and_conforms(case: schemathesis.Case, fuzz_service: str) -> None:  # type: ignore[name-defined]
    CALLS.append(1)
    response = case.call(base_url=fuzz_service, timeout=30)
    assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"
    if _only_impossible_combinations(response):
        # Cross-field rules (a birth after the year predicted for, ...) cannot be stated in JSON
        # Schema, so schema-valid data may be refused by them: still a conforming 422 answer.
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
    else:
        case.validate_response(response)


def _only_impossible_combinations(response: Any) -> bool:
    if response.status_code != 422:
        return False
    errors = response.json().get("errors") or []
    return bool(errors) and all(e.get("rule") == "impossible_combination" for e in errors)


def test_the_fuzzed_schema_is_the_served_one(service: Running) -> None:
    with service.client() as client:
        assert client.get("/openapi.json").json() == schema.raw_schema


def test_enough_cases_were_generated() -> None:
    # runs after the fuzzing test in file order; ~5 operations x CASES_PER_OPERATION
    if not CALLS:
        pytest.skip("the fuzzing test did not run in this pytest run")
    assert len(CALLS) >= 1000, len(CALLS)
