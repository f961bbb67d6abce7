"""`passos serve --workers 2`: both workers answer, follow a promotion, log and trace their own requests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from modeling.registry import Registry
from serving.prediction_log import FILE_PATTERN, read_records
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.processes import serving

pytestmark = pytest.mark.integration
EXAMPLE = {"inde": 7.5, "iaa": 8.0, "ips": 6.5, "ipp": 7.0, "ipv": 7.2, "fase": 3}
WORKERS = 2


@dataclass
class Served:
    url: str
    home: Path
    registry: Registry
    receiver: OtlpReceiver
    process: subprocess.Popen[str]
    stop: Callable[[], str]  # SIGTERM, as an orchestrator stops it; every worker drains its log and tracer


@pytest.fixture
def served(model_home: Path, tmp_path: Path) -> Iterator[Served]:
    home = tmp_path / "home"
    shutil.copytree(model_home, home)
    with OtlpReceiver("ok") as receiver:
        env = {
            "PASSOS_RELOAD_INTERVAL_S": "0.2",
            "LANGFUSE_PUBLIC_KEY": "pk-lf-workers",
            "LANGFUSE_SECRET_KEY": "sk-lf-workers",
            "LANGFUSE_BASE_URL": receiver.base_url,
            "LANGFUSE_TRACING_ENABLED": "true",
        }
        with serving(home, env=env, args=("--workers", str(WORKERS))) as started:
            yield Served(started.url, home, Registry(home / "models"), receiver, started.process, started.stop)


def _predict_fresh_connection(url: str) -> tuple[str, str, float]:
    """One request on a new connection (the kernel hands it to any worker): (worker pid, model version, when)."""
    with httpx.Client(base_url=url, timeout=10) as client:
        response = client.post("/predict", json=EXAMPLE)
    assert response.status_code == 200, response.text
    return response.headers["x-worker-pid"], response.json()["model_version"], time.monotonic()


def _answers(url: str, n: int) -> list[tuple[str, str, float]]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: _predict_fresh_connection(url), range(n)))


def test_two_workers_answer_follow_a_promotion_within_2_s_and_log_and_trace_their_own_requests(
    served: Served,
) -> None:
    # Both workers answer: fresh connections from 8 threads until both pids have been seen.
    answers: list[tuple[str, str, float]] = []
    deadline = time.monotonic() + 30
    while len({pid for pid, _, _ in answers}) < WORKERS:
        assert time.monotonic() < deadline, f"only workers { {a[0] for a in answers} } answered"
        answers += _answers(served.url, 16)
    workers = {pid for pid, _, _ in answers}
    assert str(served.process.pid) not in workers  # the supervisor itself serves nothing
    old = served.registry.champion("current")
    assert {version for _, version, _ in answers} == {old}

    # A promotion reaches every worker within 2 s (reload interval 0.2 s).
    new = next(v["version"] for v in served.registry.list_versions("current") if v["version"] != old)
    promoted_at = time.monotonic()
    served.registry.promote("current", new, reason="workers test")
    first_new: dict[str, float] = {}
    stop = threading.Event()
    after: list[tuple[str, str, float]] = []

    def hammer() -> None:
        while not stop.is_set():
            pid, version, at = _predict_fresh_connection(served.url)
            after.append((pid, version, at))
            if version == new:
                first_new.setdefault(pid, at - promoted_at)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while set(first_new) != workers and time.monotonic() < deadline:
        time.sleep(0.05)
    settled = time.monotonic()
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
    assert set(first_new) == workers, f"workers serving {new}: {first_new}; all workers: {workers}"
    assert max(first_new.values()) <= 2.0, first_new
    late_old = [(pid, at - settled) for pid, version, at in after if version == old and at > settled + 0.1]
    assert not late_old, f"old model still answered after every worker switched: {late_old[:5]}"

    # Each worker writes its own prediction log files and feeds its own tracer child.
    predictions = len(answers) + len(after)
    output = served.stop()
    files = [p for p in (served.home / "predictions").iterdir() if FILE_PATTERN.match(p.name)]
    writers = {FILE_PATTERN.match(p.name).group(2) for p in files}  # type: ignore[union-attr]
    assert writers == workers, (writers, workers, output[-2000:])
    records = list(read_records(served.home / "predictions"))  # a torn or interleaved line would be skipped
    assert len(records) == predictions, output[-2000:]
    assert sum(len(p.read_text().splitlines()) for p in files) == predictions
    spans = served.receiver.wait_for_spans(predictions, timeout=15)
    request_ids = {r["request_id"] for r in records}
    assert len(spans) == predictions and len(request_ids) == predictions
    assert all(request_id in str(spans) for request_id in list(request_ids)[:20])


@pytest.mark.parametrize("workers", ["0", "65", "two"])
def test_a_bad_worker_count_is_a_usage_error(tmp_path: Path, workers: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "cli", "serve", "--workers", workers],
        env=os.environ | {"PASSOS_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    assert "--workers" in run.stderr and "Traceback" not in run.stderr
