"""The flow tests read the session's trained home (``trained_home`` in ``tests/conftest.py``) as ``pipeline``."""

from __future__ import annotations

import pytest

from tests.support.homes import TrainedHome


@pytest.fixture(scope="session")
def pipeline(trained_home: TrainedHome) -> dict:
    """`passos run`'s flow on the real files, run once per session (recall floors: ``TRAINED_ENV``)."""
    return {"result": trained_home.result, "state": trained_home.state, "settings": trained_home.settings}
