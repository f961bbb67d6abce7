"""What other clients see while some send heavy work, against a real `passos serve` on loopback.

Batches are scored off the event loop, so `/health` (the container's liveness probe, 5 s timeout)
stays fast while clients send batches of 1,000; and a cap on open connections bounds the memory
that idle connections holding big headers can pin.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving.test_floods import EXAMPLE, MB, Served, home, serve

pytestmark = pytest.mark.integration
__all__ = ["home"]  # the fixture, re-used


@pytest.fixture
def defaults(home: Path) -> Iterator[Served]:
    running = serve(home)
    try:
        yield running
    finally:
        running.process.terminate()
        running.process.wait(timeout=30)


def health_under_batches(url: str, batch: dict[str, Any], status: int, *, warm: int = 1) -> tuple[float, float]:
    """``/health``'s median latency (15 probes) while four clients send ``batch`` in a loop, and a batch's median.

    Every batch must answer ``status``; the probes start once ``warm`` batches have been answered.
    """
    stop = threading.Event()
    batches: list[float] = []

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while not stop.is_set():
                started = time.perf_counter()
                answer = http.post("/predict/batch", json=batch)
                assert answer.status_code == status, answer.text
                batches.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        while len(batches) < warm:  # the load is on
            time.sleep(0.05)
        latencies = []
        with httpx.Client(base_url=url, timeout=30) as http:
            for _ in range(15):
                started = time.perf_counter()
                assert http.get("/health").status_code == 200
                latencies.append(time.perf_counter() - started)
                time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    return statistics.median(latencies), statistics.median(batches)


def test_health_stays_fast_while_four_clients_send_batches_of_1000(defaults: Served) -> None:
    batch = {"task": "current", "students": [dict(EXAMPLE, iaa=5 + (i % 50) / 10) for i in range(1000)]}
    p50, batch_p50 = health_under_batches(defaults.url, batch, 200)
    # Scored on the event loop, every /health waited behind whole batches: p50 close to one batch.
    assert p50 < 0.5 and p50 < batch_p50 / 2, f"/health p50 {p50:.3f} s under load (a batch: {batch_p50:.3f} s)"


def _idle_with_big_headers(served: Served, n: int, header_bytes: int) -> list[socket.socket]:
    """``n`` connections that each sent most of a request head (just under the header limit), then wait."""
    line = b"x-pad: " + b"a" * 8000 + b"\r\n"
    head = b"GET /health HTTP/1.1\r\nhost: x\r\n" + line * (header_bytes // len(line))
    sockets = []
    for _ in range(n):
        try:
            sock = socket.create_connection(("127.0.0.1", served.port), timeout=5)
            sock.sendall(head)
        except OSError:
            break
        sockets.append(sock)
    return sockets


def test_idle_connections_with_big_headers_are_capped_and_memory_stays_bounded(home: Path) -> None:
    running = serve(home, PASSOS_MAX_CONNECTIONS="100", PASSOS_HEADER_TIMEOUT_S="20")
    try:
        before = running.rss()
        sockets = _idle_with_big_headers(running, 1000, 62 * 1024)
        time.sleep(1.0)  # let the server read what it accepted
        growth = running.rss() - before
        refused = sum(1 for sock in sockets if _closed_by_server(sock))
        for sock in sockets:
            sock.close()
        # 1,000 held heads of 62 KiB pinned about 60 MB more; at most 100 are held now.
        assert growth < 30 * MB, (
            f"1,000 idle connections with 62 KiB of headers grew the server by {growth / MB:.0f} MB"
        )
        assert refused >= 850, f"only {refused} of 1,000 connections over the cap of 100 were closed"
        deadline = time.monotonic() + 10
        while True:  # the held ones are let go (here: the clients closed them), and it serves again
            try:
                if httpx.get(f"{running.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the service did not answer once the connections closed"
            time.sleep(0.2)
    finally:
        running.process.terminate()
        running.process.wait(timeout=30)


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (end of file, or a reset), without waiting."""
    sock.setblocking(False)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True
