"""The pipeline run once on the real data, shared by every test of a session that needs a trained home."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from passos.settings import get_settings


@pytest.fixture(scope="session")
def pipeline(prefect_harness: None, real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Run `passos run`'s flow once on the real files, with the original design's recall floor (0.75)."""
    from flows.pipeline import pipeline_flow

    home = tmp_path_factory.mktemp("pipeline")
    patch = pytest.MonkeyPatch()
    patch.setenv("PASSOS_HOME", str(home))
    patch.setenv("PASSOS_GATE_MIN_RECALL_CURRENT", "0.75")
    patch.setenv("PASSOS_GATE_MIN_RECALL_NEXT_YEAR", "0.75")
    get_settings.cache_clear()
    try:
        state = pipeline_flow(data_dir=str(real_data), return_state=True)
        result = state.result(raise_on_failure=False)
        yield {"result": result, "state": state, "settings": get_settings()}
    finally:
        patch.undo()
        get_settings.cache_clear()
