"""A birth date no student can have is refused with a 422 that says why."""

from __future__ import annotations

from datetime import date

import pytest

from tests.support.service import Running

pytestmark = pytest.mark.integration


def test_a_birth_in_the_future_without_a_year_is_refused(service: Running) -> None:
    with service.client() as client:
        refused = client.post("/predict", json={"data_nasc": "9999-12-31", "idade": 13, "ida": 5.0})
        assert refused.status_code == 422, refused.text
        [error] = refused.json()["errors"]
        assert error["field"] == "data_nasc" and error["rule"] == "impossible_combination"
        assert f"born in 9999, after the current year {date.today().year}" in error["message"]
        batch = {"task": "current", "students": [{"ano_nasc": 2099, "ida": 5.0}]}
        assert client.post("/predict/batch", json=batch).status_code == 422
        born_last_year = {"data_nasc": f"{date.today().year - 13}-01-02", "idade": 13, "ida": 5.0}
        assert client.post("/predict", json=born_last_year).status_code == 200
