"""A real uvicorn server on loopback, serving models from a temporary registry."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from modeling.registry import Registry
from passos.settings import Settings
from serving.app import create_app
from serving.server import uvicorn_options
from tests.factories import register_model


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Running:
    """A started service: its URL, settings and registry."""

    url: str
    settings: Settings
    registry: Registry
    server: uvicorn.Server

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kwargs)  # type: ignore[arg-type]


def start_server(settings: Settings) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        **uvicorn_options(settings),  # the limits `passos serve` runs with
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with two accepted versions per task; the first is champion."""
    home = tmp_path_factory.mktemp("serving-home")
    registry = Registry(home / "models")
    for task in ("current", "next_year"):
        first = register_model(registry, task, kind="lightgbm", seed=0)
        register_model(registry, task, kind="logistic", seed=1)
        registry.promote(task, first, reason="test setup")
    return home


@pytest.fixture
def service(model_home: Path, tmp_path: Path) -> Iterator[Running]:
    """A fresh server on its own copy of the registry (tests may promote and break models)."""
    import shutil

    home = tmp_path / "home"
    shutil.copytree(model_home, home)
    settings = Settings(home=home, reload_interval_s=0.05, batch_max=50, max_body_bytes=20_000)
    server, thread, url = start_server(settings)
    try:
        yield Running(url, settings, Registry(home / "models"), server)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
