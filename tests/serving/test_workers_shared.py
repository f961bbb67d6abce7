"""`passos serve --workers 2` enforces one rate limit, counts a batch by its students, and is ready
only while every worker serves the same versions."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from serving.shared_state import SharedBuckets, WorkerStatus
from tests.support.net import free_port

pytestmark = pytest.mark.integration
EXAMPLE = {"inde": 7.5, "iaa": 8.0, "ips": 6.5, "ipp": 7.0, "ipv": 7.2, "fase": 3}


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def two_workers(model_home: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Two workers with one bucket of 50 that barely refills (0.01 per second)."""
    home = tmp_path / "home"
    shutil.copytree(model_home, home)
    port = free_port()
    env = os.environ | {
        "PASSOS_HOME": str(home),
        "PASSOS_ID_SALT": "a-test-salt-of-enough-length",
        "PASSOS_RATE_LIMIT_PER_S": "0.01",
        "PASSOS_RATE_LIMIT_BURST": "50",
        "PASSOS_RELOAD_INTERVAL_S": "0.2",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(port), "--workers", "2", "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while not _ready(url):
            assert process.poll() is None and time.monotonic() < deadline, "the workers did not become ready"
            time.sleep(0.1)
        statuses = home / "run" / "workers" / socket.gethostname()
        while len(list(statuses.glob("*.json"))) < 2:  # both workers are up, not just the first
            assert time.monotonic() < deadline, "two workers never published their status"
            time.sleep(0.1)
        yield url, home
    finally:
        process.terminate()
        process.wait(timeout=30)


def _post(url: str, path: str, body: object, source: str = "127.0.0.1") -> tuple[int, str | None]:
    """One request on a new connection (any worker may take it) from loopback address ``source``."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=url, timeout=30, transport=transport) as client:
        response = client.post(path, json=body)
    return response.status_code, response.headers.get("x-worker-pid")


def test_one_bucket_across_two_workers_and_a_batch_costs_its_students(two_workers: tuple[str, Path]) -> None:
    url, _home = two_workers
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _post(url, "/predict", EXAMPLE), range(100)))
    passed = [pid for code, pid in answers if code == 200]
    assert {code for code, _ in answers} == {200, 429}
    assert len(set(passed)) == 2, "both workers should have answered some requests"
    # One bucket of 50 for the two workers (per-worker buckets let 95 of 100 through).
    assert len(passed) <= 51, f"{len(passed)} of 100 requests passed a limit of 50"

    # Another client (a second loopback address): a batch of 40 costs 40 tokens, not one.
    batch = {"task": "current", "students": [EXAMPLE] * 40}
    other = "127.0.0.2"
    assert _post(url, "/predict/batch", batch, other)[0] == 200  # 50 -> 10
    assert _post(url, "/predict/batch", batch, other)[0] == 200  # admitted with 10 left: 10 -> -30
    refused = [_post(url, "/predict", EXAMPLE, other)[0] for _ in range(6)]
    assert refused == [429] * 6, refused


def test_ready_fails_while_the_workers_serve_different_versions(two_workers: tuple[str, Path]) -> None:
    url, home = two_workers
    folder = home / "run" / "workers" / socket.gethostname()
    serving = json.loads(next(folder.glob("*.json")).read_text())["models"]
    # A third live process of this server that still serves an older version of `current`.
    lagging = folder / f"{os.getpid()}.json"
    lagging.write_text(json.dumps({"pid": os.getpid(), "models": serving | {"current": "v-old"}}))
    try:
        answers = [httpx.get(f"{url}/ready", timeout=5) for _ in range(6)]  # fresh connections: both workers
        assert {a.status_code for a in answers} == {503}
        assert all("serve different versions" in a.json()["problems"]["workers"] for a in answers)
        assert "v-old" in answers[0].json()["problems"]["workers"]
    finally:
        lagging.unlink()
    assert _ready(url)


def test_a_stale_or_dead_worker_status_is_ignored(tmp_path: Path) -> None:
    status = WorkerStatus(tmp_path, stale_s=5.0)
    status.write({"current": "v1"})
    peer = tmp_path / socket.gethostname() / "99999999.json"  # no such process
    peer.write_text(json.dumps({"pid": 99_999_999, "models": {"current": "v0"}}))
    old = tmp_path / socket.gethostname() / f"{os.getppid()}.json"  # alive, but not rewritten for a minute
    old.write_text(json.dumps({"pid": os.getppid(), "models": {"current": "v0"}}))
    os.utime(old, (time.time() - 60, time.time() - 60))
    (tmp_path / socket.gethostname() / "torn.json").write_text("{")
    assert status.others() == {}
    status.remove()
    assert not status.file.exists()


def test_shared_buckets_refill_go_into_debt_and_stay_bounded(tmp_path: Path) -> None:
    buckets = SharedBuckets(tmp_path / "rl.sqlite", per_second=1.0, burst=3, max_clients=10)
    assert [buckets.take("a", now=100.0) for _ in range(4)] == [True, True, True, False]
    assert buckets.take("a", now=101.0)  # one token refilled
    buckets.charge("a", 5, now=101.0)  # a batch's other students: 0 -> -5
    assert not buckets.take("a", now=105.0)  # -5 + 4 = -1
    assert buckets.take("a", now=107.0)  # -1 + 2 = 1: taken
    other = SharedBuckets(tmp_path / "rl.sqlite", per_second=1.0, burst=3, max_clients=10)  # another worker
    assert not other.take("a", now=107.0)
    assert not buckets.take("a", now=1.0)  # a clock set back: no refill (and no free reset)
    for i in range(30):
        other.take(f"ip:{i}", now=200.0 + i)
    with other._connect() as con:
        assert con.execute("select count(*) from buckets").fetchone()[0] == 10
    assert buckets.take("new")  # its own clock, read under the lock


def test_a_worker_status_that_cannot_be_written_is_warned_once(tmp_path: Path) -> None:
    import asyncio
    import logging

    from passos.settings import Settings
    from serving.app import Services, _publish_status

    home = tmp_path / "home"
    home.mkdir()
    (home / "run").write_text("a file where the folder should be")
    services = Services(Settings(home=home, reload_interval_s=0.1))
    try:
        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append  # type: ignore[method-assign]
        logging.getLogger("serving.app").addHandler(handler)

        async def run_a_while() -> None:
            task = asyncio.create_task(_publish_status(services))
            await asyncio.sleep(0.5)
            task.cancel()

        asyncio.run(run_a_while())
        logging.getLogger("serving.app").removeHandler(handler)
        warned = [r for r in records if "cannot publish the worker status" in r.getMessage()]
        assert len(warned) == 1  # about five attempts, one warning
    finally:
        services.close()
