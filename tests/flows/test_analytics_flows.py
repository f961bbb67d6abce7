"""An analyst's session on analytics.duckdb, open in another process, never blocks ingest or training."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from passos.settings import Settings
from tests.warehouse.test_analytics import ask, close, hold_open, undescribed
from warehouse.analytics import refresh_analytics

pytestmark = [pytest.mark.integration, pytest.mark.data, pytest.mark.slow]


def test_an_open_analyst_session_blocks_neither_ingest_nor_training(
    prefect_harness: None, settings: Settings, real_data: Path
) -> None:
    from flows.ingest import ingest_flow
    from flows.train import train_flow

    refresh_analytics(settings)  # what an analyst finds before the first ingest: the tables, empty
    reader = hold_open(settings.analytics_path)
    try:
        ingested = ingest_flow(sources=[str(real_data)])
        assert sum(r["rows_loaded"] for r in ingested) == 3030
        trained = train_flow(task="current")  # the default gate (current passes it on the real data)
        outcomes = trained if isinstance(trained, list) else trained.result()
        version = outcomes[0]["version"]
        # the session stayed open the whole time and still reads the snapshot it opened
        assert ask(reader, "select count(*) from students") == "0"
    finally:
        close(reader)
    with duckdb.connect(str(settings.analytics_path), read_only=True) as con:  # the next session
        assert con.execute("select count(*) from students").fetchall() == [(3030,)]
        assert con.execute("select count(*) from features").fetchall() == [(3030,)]
        assert con.execute("select count(*) from model_registry where version = ?", [version]).fetchall() == [(1,)]
    assert undescribed(settings.analytics_path) == []
