"""Loopback ports and waiting for a condition."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
    alive: Callable[[], bool] | None = None,
) -> float:
    """Poll ``predicate`` until it holds; the seconds it took.

    Raises:
        AssertionError: ``timeout`` passed first, or ``alive`` (the thing being waited on) died.
    """
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if alive is not None and not alive():
            raise AssertionError(f"{what}: the process it waits on has stopped")
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} not reached within {timeout:g} s")
        time.sleep(interval)


def answers(url: str, *, status: int = 200) -> bool:
    """Whether ``GET url`` answers with ``status`` now (any transport error is a no)."""
    try:
        return httpx.get(url, timeout=2).status_code == status
    except httpx.HTTPError:
        return False


def listening(url: str) -> bool:
    """Whether something accepts TCP connections at ``url``'s host and port."""
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme in ("https", "wss") else 80)
    try:
        with socket.create_connection((parsed.host, port), timeout=1):
            return True
    except OSError:
        return False
