"""The out-of-process tracer: same contract as Tracer, SDK work in a child process."""

from __future__ import annotations

import time

import pytest

from serving.tracing import ProcessTracer
from tests.support.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _sdk_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LANGFUSE_TRACING_ENABLED", "LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def config(base_url: str) -> dict[str, object]:
    return {"public_key": "pk-lf-proc", "secret_key": "sk-lf-proc", "base_url": base_url, "timeout_s": 1.0}


def one(tracer: ProcessTracer, i: int) -> None:
    tracer.record(
        name="predict",
        request_id=f"r{i}",
        inputs={"iaa": 7.0},
        output={"risk_score": 0.5, "risk_label": "low"},
        model_version="v1",
        task="current",
        latency_ms=1.0,
    )


def test_disabled_without_keys_starts_nothing() -> None:
    tracer = ProcessTracer({"public_key": None, "secret_key": None, "base_url": "http://127.0.0.1:9"})
    assert not tracer.enabled
    one(tracer, 0)
    tracer.shutdown()
    assert tracer.sent == 0 and tracer.dropped == 0


def test_records_reach_the_receiver_from_the_child_process() -> None:
    with OtlpReceiver("ok") as receiver:
        tracer = ProcessTracer(config(receiver.base_url))
        for i in range(5):
            one(tracer, i)
        tracer.record(name="predict")  # missing fields: dropped, never raised
        tracer.shutdown(timeout=5)
        spans = receiver.wait_for_spans(5, timeout=10)
    assert len(spans) >= 5 and tracer.dropped == 1
    tracer.shutdown()  # twice is fine


def test_a_dead_host_costs_the_caller_nothing() -> None:
    tracer = ProcessTracer(config("http://127.0.0.1:9"))
    started = time.perf_counter()
    for i in range(200):
        one(tracer, i)
    queued = time.perf_counter() - started
    tracer.shutdown(timeout=1)
    assert queued < 1.0  # generous: ~20 µs a call; the 1 s SDK timeout is never waited on here
