"""A real uvicorn server on loopback, serving models from a temporary registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from passos.settings import Settings
from tests.support.homes import build_factory_home
from tests.support.service import Running, running_service


@pytest.fixture(scope="session")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with two accepted versions per task; the first is champion."""
    return build_factory_home(tmp_path_factory.mktemp("serving-home"))


@pytest.fixture
def service(model_home: Path, tmp_path: Path) -> Iterator[Running]:
    """A fresh server on its own copy of the registry (tests may promote and break models)."""
    import shutil

    home = tmp_path / "home"
    shutil.copytree(model_home, home)
    settings = Settings(home=home, reload_interval_s=0.05, batch_max=50, max_body_bytes=20_000)
    with running_service(settings) as running:
        yield running
