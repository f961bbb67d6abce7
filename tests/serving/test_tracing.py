"""Tracing to Langfuse: the real SDK exporting to a real OTLP receiver on loopback."""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider

from passos.settings import Settings
from serving.prediction_log import hash_student_id
from serving.tracing import Tracer
from tests.support.net import free_port
from tests.support.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration

RAW_ID = "RA-90210"
STUDENT_NAME = "Aluno Fulano de Tal"
INPUTS = {"IDA": 4.5, "IEG": 7.25, "Fase": 3, "Gênero": "Feminino"}
OUTPUT = {"risk_score": 0.83, "risk_label": 1}
STUDENT_HASH = hash_student_id(RAW_ID, "salt")


@pytest.fixture(autouse=True)
def _no_langfuse_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "LANGFUSE_PUBLIC_KEY",
        "LANGFUSE_SECRET_KEY",
        "LANGFUSE_BASE_URL",
        "LANGFUSE_HOST",
        "LANGFUSE_TRACING_ENABLED",
        "LANGFUSE_TIMEOUT",
        "LANGFUSE_FLUSH_INTERVAL",
        "LANGFUSE_FLUSH_AT",
    ):
        monkeypatch.delenv(name, raising=False)


def make_settings(tmp_path: Path, base_url: str, *, timeout_s: float = 0.5, **extra: Any) -> Settings:
    fields: dict[str, Any] = {
        "LANGFUSE_PUBLIC_KEY": f"pk-lf-{uuid.uuid4().hex[:8]}",
        "LANGFUSE_SECRET_KEY": "sk-lf-secret",
        "LANGFUSE_BASE_URL": base_url,
        "LANGFUSE_TIMEOUT": timeout_s,
    }
    fields.update(extra)
    return Settings(home=tmp_path, **fields)


def record_one(tracer: Tracer, i: int = 0, **overrides: Any) -> None:
    arguments: dict[str, Any] = {
        "name": "predict",
        "request_id": f"req-{i}",
        "inputs": INPUTS,
        "output": OUTPUT,
        "model_version": "current-20250101T000000",
        "task": "current",
        "latency_ms": 12.5,
        "student_hash": STUDENT_HASH,
    }
    arguments.update(overrides)
    tracer.record(**arguments)


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_a_prediction_arrives_as_one_trace_with_inputs_output_and_metadata(tmp_path: Path) -> None:
    with OtlpReceiver("ok") as receiver:
        settings = make_settings(tmp_path, receiver.base_url)
        tracer = Tracer.from_settings(settings)
        assert tracer.enabled
        record_one(tracer)
        tracer.shutdown(timeout=5)
        spans = receiver.wait_for_spans(1, timeout=5)

    assert len(spans) == 1
    span = spans[0]
    attributes = span["attributes"]
    assert span["name"] == "predict"
    assert span["scope"] == "langfuse-sdk"
    assert span["parent_span_id"] == ""
    assert span["resource"]["service.name"] == "passos-serving"
    assert json.loads(attributes["langfuse.observation.input"]) == INPUTS
    assert json.loads(attributes["langfuse.observation.output"]) == OUTPUT
    metadata = {
        key.removeprefix("langfuse.observation.metadata."): json.loads(value)
        for key, value in attributes.items()
        if key.startswith("langfuse.observation.metadata.")
    }
    assert metadata == {
        "model_version": "current-20250101T000000",
        "task": "current",
        "latency_ms": 12.5,
        "request_id": "req-0",
        "student_hash": STUDENT_HASH,
    }
    assert attributes["langfuse.trace.name"] == "predict"
    assert attributes["langfuse.trace.tags"] == ["current"]
    assert attributes["langfuse.version"] == "current-20250101T000000"
    assert attributes["user.id"] == STUDENT_HASH
    assert attributes["langfuse.observation.level"] == "DEFAULT"
    assert span["status"]["code"] != otel_trace.StatusCode.ERROR.value

    secret = settings.langfuse_secret_key
    assert secret is not None
    expected = base64.b64encode(f"{settings.langfuse_public_key}:{secret.get_secret_value()}".encode()).decode()
    assert receiver.auth_headers == [f"Basic {expected}"]

    body = b"".join(receiver.bodies)
    assert RAW_ID.encode() not in body
    assert STUDENT_NAME.encode() not in body
    assert tracer.sent == 1
    assert tracer.dropped == 0


def test_a_failed_prediction_is_an_error_observation(tmp_path: Path) -> None:
    with OtlpReceiver("ok") as receiver:
        tracer = Tracer.from_settings(make_settings(tmp_path, receiver.base_url))
        record_one(tracer, output={}, model_version=None, error="model file is corrupt", student_hash=None)
        tracer.shutdown(timeout=5)
        spans = receiver.wait_for_spans(1, timeout=5)

    attributes = spans[0]["attributes"]
    assert attributes["langfuse.observation.level"] == "ERROR"
    assert attributes["langfuse.observation.status_message"] == "model file is corrupt"
    assert json.loads(attributes["langfuse.observation.metadata.error"]) == "model file is corrupt"
    assert spans[0]["status"] == {"code": otel_trace.StatusCode.ERROR.value, "message": "model file is corrupt"}
    assert "langfuse.observation.metadata.model_version" not in attributes
    assert "user.id" not in attributes


def test_other_libraries_spans_never_reach_langfuse(tmp_path: Path) -> None:
    global_before = otel_trace.get_tracer_provider()
    app_provider = TracerProvider()  # stands in for FastAPI/HTTP instrumentation
    with OtlpReceiver("ok") as receiver:
        tracer = Tracer.from_settings(make_settings(tmp_path, receiver.base_url))
        assert otel_trace.get_tracer_provider() is global_before

        with app_provider.get_tracer("opentelemetry.instrumentation.fastapi").start_as_current_span("POST /predict"):
            record_one(tracer)
            otel_trace.get_tracer("opentelemetry.instrumentation.httpx").start_span("GET upstream").end()
        # Even a foreign span on the SDK's own provider is kept out by the export filter.
        assert tracer._provider is not None
        foreign = tracer._provider.get_tracer("opentelemetry.instrumentation.openai")
        foreign.start_span("chat", attributes={"gen_ai.system": "openai"}).end()
        tracer.shutdown(timeout=5)
        spans = receiver.wait_for_spans(1, timeout=5)
        time.sleep(0.05)

    assert [span["name"] for span in receiver.spans] == ["predict"]
    assert spans[0]["parent_span_id"] == ""  # a root, not a child of the request's span
    app_provider.shutdown()


def test_a_new_tracer_with_the_same_key_after_shutdown_sends_to_its_own_host(tmp_path: Path) -> None:
    fields: dict[str, Any] = {"LANGFUSE_PUBLIC_KEY": "pk-lf-restart"}
    with OtlpReceiver("ok") as first:
        tracer = Tracer.from_settings(make_settings(tmp_path, first.base_url, **fields))
        record_one(tracer, 1)
        tracer.shutdown(timeout=5)
        assert len(first.wait_for_spans(1)) == 1
    with OtlpReceiver("ok") as second:
        tracer = Tracer.from_settings(make_settings(tmp_path, second.base_url, **fields))
        record_one(tracer, 2)
        tracer.shutdown(timeout=5)
        spans = second.wait_for_spans(1)
    assert json.loads(spans[0]["attributes"]["langfuse.observation.metadata.request_id"]) == "req-2"


@pytest.mark.parametrize("mode", ["closed", "slow", "error"])
def test_a_broken_host_never_slows_or_fails_the_caller(tmp_path: Path, mode: str) -> None:
    receiver = OtlpReceiver("ok" if mode == "closed" else mode)  # type: ignore[arg-type]
    with receiver:
        base_url = closed_port_url() if mode == "closed" else receiver.base_url
        # A host timeout longer than the shutdown bound: shutdown must not wait for it.
        tracer = Tracer(
            public_key=f"pk-lf-{mode}",
            secret_key="sk-lf",
            base_url=base_url,
            timeout_s=0.5 if mode != "slow" else 5.0,
            flush_interval_s=0.05,
        )
        durations = []
        for i in range(200):
            start = time.perf_counter()
            record_one(tracer, i)
            durations.append(time.perf_counter() - start)
        time.sleep(0.3)  # let the SDK reach the host
        start = time.perf_counter()
        tracer.shutdown(timeout=1.0)
        shutdown_s = time.perf_counter() - start

    assert sum(durations) < 0.5, f"200 record() calls took {sum(durations):.3f} s"
    assert max(durations) < 0.05
    assert shutdown_s < 1.5
    assert tracer.sent + tracer.dropped == 200
    if mode != "closed":
        assert receiver.requests >= 1  # the SDK did reach the broken host


def test_an_overwhelmed_tracer_drops_and_counts(tmp_path: Path) -> None:
    with OtlpReceiver("ok") as receiver:
        tracer = Tracer(public_key="pk-lf-overflow", secret_key="sk", base_url=receiver.base_url, queue_size=1)
        for i in range(2000):
            record_one(tracer, i)
        tracer.shutdown(timeout=5)
    assert tracer.dropped > 0
    assert tracer.sent + tracer.dropped == 2000


def test_bad_arguments_and_records_after_shutdown_are_dropped_not_raised(tmp_path: Path) -> None:
    with OtlpReceiver("ok") as receiver:
        tracer = Tracer.from_settings(make_settings(tmp_path, receiver.base_url))
        record_one(tracer, inputs=None)  # not a dict: rejected at the door
        record_one(tracer, output={"risk_score": object()})  # odd values are the SDK's to serialise
        tracer.shutdown(timeout=5)
        tracer.shutdown(timeout=5)
        record_one(tracer)
    assert tracer.dropped == 2
    assert tracer.sent == 1


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"LANGFUSE_PUBLIC_KEY": "pk"},
        {"LANGFUSE_SECRET_KEY": "sk"},
        {"LANGFUSE_PUBLIC_KEY": "pk", "LANGFUSE_SECRET_KEY": "sk", "LANGFUSE_TRACING_ENABLED": False},
    ],
)
def test_without_both_keys_or_when_disabled_the_tracer_does_nothing(tmp_path: Path, fields: dict[str, Any]) -> None:
    with OtlpReceiver("ok") as receiver:
        tracer = Tracer.from_settings(Settings(home=tmp_path, **{"LANGFUSE_BASE_URL": receiver.base_url, **fields}))
        assert not tracer.enabled
        start = time.perf_counter()
        for i in range(10_000):
            record_one(tracer, i)
        elapsed = time.perf_counter() - start
        tracer.shutdown(timeout=1)
        time.sleep(0.05)
    assert elapsed < 0.2
    assert receiver.requests == 0
    assert (tracer.sent, tracer.dropped) == (0, 0)


def test_a_second_live_client_with_the_same_key_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with OtlpReceiver("ok") as receiver:
        fields: dict[str, Any] = {"LANGFUSE_PUBLIC_KEY": "pk-lf-twice"}
        first = Tracer.from_settings(make_settings(tmp_path, receiver.base_url, **fields))
        with caplog.at_level(logging.WARNING, logger="serving.tracing"):
            second = Tracer.from_settings(make_settings(tmp_path, receiver.base_url, **fields))
        second.shutdown(timeout=5)
        first.shutdown(timeout=5)
    assert any("already exists" in record.message for record in caplog.records)
