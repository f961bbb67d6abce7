"""The FastAPI service on a real uvicorn server in a thread of the test process, on a loopback port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn

from modeling.registry import Registry
from passos.settings import Settings
from serving.app import create_app
from serving.server import uvicorn_options
from tests.support.net import free_port, wait_until


@dataclass
class Running:
    """A started service: its URL, settings and registry."""

    url: str
    settings: Settings
    registry: Registry
    server: uvicorn.Server

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(**({"base_url": self.url, "timeout": 10} | kwargs))  # type: ignore[arg-type]


def start_server(settings: Settings) -> tuple[uvicorn.Server, threading.Thread, str]:
    """Serve ``create_app(settings)`` with the limits ``passos serve`` runs with; (server, thread, URL)."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        **uvicorn_options(settings),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=20, what="uvicorn started", alive=thread.is_alive)
    return server, thread, f"http://127.0.0.1:{port}"


def stop_server(server: uvicorn.Server, thread: threading.Thread) -> None:
    """Ask a server from ``start_server`` to exit and wait for its thread."""
    server.should_exit = True
    thread.join(timeout=10)


@contextmanager
def running_service(settings: Settings) -> Iterator[Running]:
    """``start_server`` as a context manager: the service over ``settings.home``, stopped on the way out."""
    server, thread, url = start_server(settings)
    try:
        yield Running(url, settings, Registry(settings.home / "models"), server)
    finally:
        stop_server(server, thread)
