"""In-process Prefect calls against a test server leave no events worker behind when it stops."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support.prefect import events_worker_urls, prefect_api, prefect_server, stale_events_workers

pytestmark = pytest.mark.integration


def test_events_sent_in_process_reach_their_server_and_no_worker_outlives_it(tmp_path: Path) -> None:
    from prefect.events import emit_event

    with prefect_server(tmp_path) as server:
        with prefect_api(server.api):
            emit_event(event="passos.test.ping", resource={"prefect.resource.id": "passos.test"})
            assert events_worker_urls() == [server.api]
        deadline = time.monotonic() + 30  # the server stores events asynchronously
        found: list[dict[str, object]] = []
        while not found and time.monotonic() < deadline:
            page = httpx.post(
                f"{server.api}/events/filter", json={"filter": {"event": {"name": ["passos.test.ping"]}}}, timeout=10
            )
            found = page.raise_for_status().json()["events"]
            time.sleep(0.5)
        assert found, "the event sent in-process did not reach its server"
    assert events_worker_urls() == []
    assert stale_events_workers() == []
