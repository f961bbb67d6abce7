"""A real Prefect server for tests, and in-process Prefect calls that leave no events worker behind.

Prefect's ``EventsWorker`` is one per process, keyed without the API URL: the first event sent
binds it to the ``PREFECT_API_URL`` of that moment. Calls made in-process against a server that a
test later stops would leave every later event of the process retrying against a dead address
(seconds per event, minutes at exit). ``prefect_api`` drains the worker on the way in (the next
one binds to this server) and on the way out (its events are sent while the server still answers).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.net import answers, free_port, listening, wait_until
from tests.support.processes import stop

SERVER_START_TIMEOUT_S = 120


def drain_events_workers(*, timeout: float = 30) -> None:
    """Send every queued Prefect event and stop the process's events workers (a new one starts on demand)."""
    if "prefect.events.worker" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=timeout)


def events_worker_urls() -> list[str]:
    """The API URL each running Prefect events worker of this process sends to."""
    if "prefect.events.worker" not in sys.modules:
        return []
    from prefect.events.worker import EventsWorker

    urls = []
    # The registry is shared by every queue service of the process (concurrency slots, ...): events workers only.
    for worker in list(EventsWorker._instances.values()):  # type: ignore[misc]  # the process-wide registry
        if not isinstance(worker, EventsWorker) or getattr(worker, "_stopped", True):
            continue
        url = getattr(getattr(worker, "_client", None), "_api_url", None) or dict(worker.client_options).get("api_url")
        if isinstance(url, str):
            urls.append(url)
    return urls


def stale_events_workers() -> list[str]:
    """The URLs of running events workers whose server no longer accepts connections."""
    return [url for url in events_worker_urls() if not listening(url)]


def discard_stale_events_workers() -> None:
    """Stop the events workers whose server is gone, dropping their queue (after a test has failed for it)."""
    from prefect.events.worker import EventsWorker

    stale = set(stale_events_workers())
    for worker in list(EventsWorker._instances.values()):  # type: ignore[misc]  # the process-wide registry
        if isinstance(worker, EventsWorker) and getattr(getattr(worker, "_client", None), "_api_url", None) in stale:
            with worker._queue.mutex:
                worker._queue.queue.clear()
            worker._stop()


@contextmanager
def prefect_api(url: str) -> Iterator[None]:
    """In-process Prefect calls (blocks, deployments, automations) against the server at ``url``."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    drain_events_workers()
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield
    finally:
        drain_events_workers()


@dataclass
class PrefectServer:
    """A running ``prefect server start``: its API URL, the environment for its clients, its folder."""

    api: str
    env: dict[str, str]
    root: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def log(self) -> Path:
        return self.root / "server.log"


@contextmanager
def prefect_server(root: Path, *, env: Mapping[str, str] | None = None) -> Iterator[PrefectServer]:
    """A real ``prefect server start`` on a free loopback port with its own SQLite home under ``root``.

    ``env`` is added to the clients' environment (``PrefectServer.env``), which carries no other
    ``PREFECT_*`` or ``PASSOS_*`` variable of this process. On the way out, queued events are sent
    before the server stops, and no events worker of this process may still point at it.
    """
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    client_env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "PASSOS_"))} | {
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "LANGFUSE_TRACING_ENABLED": "false",
    }
    client_env |= dict(env or {})
    with (root / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            cwd=root,
            env=client_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = PrefectServer(api, client_env, root, process)
    try:
        wait_until(
            lambda: answers(f"{api}/health"),
            timeout=SERVER_START_TIMEOUT_S,
            interval=0.5,
            what="Prefect server healthy",
            alive=lambda: process.poll() is None,
        )
    except AssertionError as error:
        stop(process)
        raise AssertionError(f"{error}: {server.log.read_text()[-2000:]}") from None
    try:
        yield server
    finally:
        drain_events_workers()
        stop(process)
        left = [url for url in events_worker_urls() if url.startswith(api)]
        assert not left, f"a Prefect events worker still sends to the stopped server {left}"
