"""Header floods, slow clients and spoofed forwarding against a real `passos serve` process.

Each test starts `passos serve` on loopback (what `make run` and the image run) and measures the
process from outside: its resident memory (psutil) and what its sockets answer, and when.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.processes import ServedProcess, start_serve

pytestmark = pytest.mark.integration
EXAMPLE = {"inde": 7.5, "iaa": 8.0, "ips": 6.5, "ipp": 7.0, "ipv": 7.2, "fase": 3}
MB = 1024 * 1024


class Served(ServedProcess):
    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)


def serve(home: Path, **env: str) -> Served:
    started = start_serve(
        home, env={"PASSOS_ID_SALT": "a-salt-for-the-tests", **env}, output=subprocess.DEVNULL, timeout=60
    )
    return Served(started.port, started.home, started.process)


@pytest.fixture
def home(model_home: Path, tmp_path: Path) -> Path:
    target = tmp_path / "home"
    shutil.copytree(model_home, target)
    return target


@pytest.fixture
def served(home: Path) -> Iterator[Served]:
    running = serve(home, PASSOS_HEADER_TIMEOUT_S="3", PASSOS_BODY_TIMEOUT_S="3")
    try:
        yield running
    finally:
        running.process.terminate()
        running.process.wait(timeout=10)


def _answer(sock: socket.socket, deadline: float | None = None) -> bytes:
    """Everything the server sends until it closes the connection (or the deadline, default 30 s, passes)."""
    deadline = deadline or time.monotonic() + 30
    data = b""
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not (chunk := sock.recv(65536)):
                break
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def test_200_mb_of_headers_on_one_connection_is_cut_off_with_431(served: Served) -> None:
    before = served.rss()
    sent = 0
    line = b"X-Filler: " + b"a" * 8180 + b"\r\n"
    with served.connect() as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        try:
            while sent < 200 * MB:
                sock.sendall(line * 128)  # 1 MB at a time, before any auth check could run
                sent += len(line) * 128
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _answer(sock)
    growth = served.rss() - before
    assert sent < 200 * MB, "the server read 200 MB of headers without closing the connection"
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert growth < 100 * MB, f"the service grew by {growth / MB:.0f} MB"
    assert httpx.post(f"{served.url}/predict", json=EXAMPLE).status_code == 200  # still serving


def test_one_huge_header_value_is_refused_too(served: Served) -> None:
    with served.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(64):
                sock.sendall(b"b" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert _answer(sock).startswith(b"HTTP/1.1 431")


def test_too_many_header_fields_get_431(served: Served) -> None:
    fields = b"".join(b"X-F%d: 1\r\n" % i for i in range(150))
    with served.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 431") and b"header fields" in answer


def test_idle_half_requests_are_closed_within_10_s(served: Served) -> None:
    sockets = [served.connect() for _ in range(100)]
    for sock in sockets[:50]:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: app")  # a head never finished
    started = time.monotonic()
    answers = []
    for sock in sockets:
        with sock:
            answers.append(_answer(sock, deadline=started + 15))
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"half-requests held open for {elapsed:.1f} s"
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers[:50]), answers[0][:100]
    assert all(a == b"" for a in answers[50:])  # connections that asked nothing are just closed
    assert httpx.get(f"{served.url}/health").status_code == 200


def test_a_trickled_head_cannot_reset_the_deadline(served: Served) -> None:
    with served.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        started = time.monotonic()
        try:
            for i in range(20):  # one header a second: each byte would have reset an idle timer
                sock.sendall(b"X-%d: 1\r\n" % i)
                time.sleep(1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _answer(sock)
    assert time.monotonic() - started < 10
    assert answer.startswith(b"HTTP/1.1 408")


def test_a_slow_body_gets_408_in_bounded_time(served: Served) -> None:
    with served.connect() as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        )
        started = time.monotonic()
        try:
            for _ in range(20):
                sock.sendall(b" ")  # a byte a second, never finishing
                time.sleep(0.5)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _answer(sock)
    assert time.monotonic() - started < 10
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"connection: close" in answer.lower()


def test_keep_alive_requests_still_work(served: Served) -> None:
    with httpx.Client(base_url=served.url) as client:
        codes = [client.post("/predict", json=EXAMPLE).status_code for _ in range(5)]
        time.sleep(1)
        codes.append(client.get("/health").status_code)
    assert codes == [200] * 6


def test_a_spoofed_x_forwarded_for_does_not_escape_the_rate_limit(home: Path) -> None:
    running = serve(home, PASSOS_RATE_LIMIT_PER_S="0.5", PASSOS_RATE_LIMIT_BURST="3")
    try:
        with httpx.Client(base_url=running.url) as client:
            codes = [
                client.post("/predict", json=EXAMPLE, headers={"x-forwarded-for": f"10.0.0.{i}"}).status_code
                for i in range(8)
            ]
    finally:
        running.process.terminate()
        running.process.wait(timeout=10)
    assert codes[:3] == [200] * 3 and codes[3:] == [429] * 5


def test_x_forwarded_for_is_used_from_a_configured_proxy(home: Path) -> None:
    running = serve(
        home, PASSOS_RATE_LIMIT_PER_S="0.5", PASSOS_RATE_LIMIT_BURST="3", PASSOS_FORWARDED_ALLOW_IPS="127.0.0.1"
    )
    try:
        with httpx.Client(base_url=running.url) as client:
            codes = [
                client.post("/predict", json=EXAMPLE, headers={"x-forwarded-for": f"10.0.0.{i % 2}"}).status_code
                for i in range(8)
            ]
    finally:
        running.process.terminate()
        running.process.wait(timeout=10)
    assert codes[:6] == [200] * 6 and codes[6:] == [429] * 2  # two clients behind the proxy, 3 each
