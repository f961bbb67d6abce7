"""The service traces every call to Langfuse (a real SDK, a local OTLP receiver) and never waits on it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

from passos.settings import Settings
from serving.prediction_log import read_records
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.service import start_server

pytestmark = pytest.mark.integration
EXAMPLE = {"inde": 7.5, "iaa": 8.0, "ips": 6.5, "ipp": 7.0, "ipv": 7.2, "fase": 3}


@pytest.fixture(autouse=True)
def _sdk_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK reads LANGFUSE_* itself; the suite disables tracing by default (tests/conftest.py).
    for name in ("LANGFUSE_TRACING_ENABLED", "LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def run_calls(
    model_home: Path, tmp_path: Path, base_url: str, n: int, *, sdk_timeout: float = 1
) -> tuple[list[float], Settings]:
    home = tmp_path / "home"
    shutil.copytree(model_home, home)
    settings = Settings(
        home=home,
        LANGFUSE_PUBLIC_KEY="pk-lf-test",
        LANGFUSE_SECRET_KEY="sk-lf-test",
        LANGFUSE_BASE_URL=base_url,
        LANGFUSE_TRACING_ENABLED=True,
        LANGFUSE_TIMEOUT=sdk_timeout,
    )
    server, thread, url = start_server(settings)
    latencies = []
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            for i in range(n):
                started = time.perf_counter()
                response = client.post("/predict", json=EXAMPLE | {"student_id": f"RA-{i}", "ida": 5.0})
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=15)
    return latencies, settings


def test_each_call_becomes_a_trace_with_inputs_output_and_version(model_home: Path, tmp_path: Path) -> None:
    with OtlpReceiver("ok") as receiver:
        # The service gives the tracer's child LANGFUSE_TIMEOUT (+1 s) to flush at shutdown; on a
        # loaded machine the child may still be importing the SDK after 2 s, so allow 10 here
        # (it exits as soon as it has sent, so a healthy run does not wait).
        _, _settings = run_calls(model_home, tmp_path, receiver.base_url, 3, sdk_timeout=10)
        spans = receiver.wait_for_spans(3, timeout=30)  # returns as soon as they arrive; a busy CI box is slow
        raw = b"".join(receiver.bodies)
    names = {span["name"] for span in spans}
    assert names == {"predict"}, names  # no HTTP-framework spans reach Langfuse
    text = str(spans)
    assert "model_version" in text and "current" in text and "risk_score" in text and "iaa" in text
    assert b"RA-0" not in raw and b"RA-1" not in raw


@pytest.mark.parametrize("mode", ["down", "slow", "error"])
def test_predictions_go_on_when_langfuse_fails(model_home: Path, tmp_path: Path, mode: str) -> None:
    if mode == "down":
        latencies, settings = run_calls(model_home, tmp_path, "http://127.0.0.1:9", 40)
    else:
        with OtlpReceiver(mode, slow_s=5) as receiver:  # type: ignore[arg-type]
            latencies, settings = run_calls(model_home, tmp_path, receiver.base_url, 40)
    assert sorted(latencies)[len(latencies) // 2] < 0.1  # median far below the SDK's 1 s timeout
    records = list(read_records(settings.predictions_dir))
    assert len(records) == 40  # the local log keeps every call
