"""Header floods and slow clients against `passos serve`: what a client can make the service hold.

Usage: .venv/bin/python benchmarks/floods.py [--mb 200] [--half 300]
A temporary registry (small models on synthetic data), one `passos serve` process with the default
limits; then (1) up to --mb MB of headers on one connection: bytes the server took before closing,
its answer, and the growth of its resident memory; (2) --half half-sent requests: how long until the
server has closed them all; (3) a body sent a byte every half second: the answer and its delay.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import machine, save
from benchmarks.api import free_port
from modeling.registry import Registry
from tests.factories import register_model

MB = 1024 * 1024


def _drain(sock: socket.socket, deadline: float) -> bytes:
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


def header_flood(port: int, pid: int, megabytes: int) -> dict[str, object]:
    process = psutil.Process(pid)
    before = process.memory_info().rss
    peak = before
    sent = 0
    line = b"X-Filler: " + b"a" * 8180 + b"\r\n"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        try:
            while sent < megabytes * MB:
                sock.sendall(line * 128)
                sent += len(line) * 128
                peak = max(peak, process.memory_info().rss)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _drain(sock, time.monotonic() + 30)
    peak = max(peak, process.memory_info().rss)
    return {
        "offered_mb": megabytes,
        "sent_before_close_kb": round(sent / 1024, 1),
        "answer": answer.split(b"\r\n", 1)[0].decode(errors="replace"),
        "rss_growth_mb": round((peak - before) / MB, 1),
    }


def half_requests(port: int, count: int) -> dict[str, object]:
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    for sock in sockets:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: app")
    started = time.monotonic()
    answers = []
    for sock in sockets:
        with sock:
            answers.append(_drain(sock, started + 60).split(b"\r\n", 1)[0].decode(errors="replace"))
    return {
        "half_requests": count,
        "all_closed_after_s": round(time.monotonic() - started, 2),
        "answers": sorted(set(answers)),
    }


def slow_body(port: int) -> dict[str, object]:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        )
        started = time.monotonic()
        try:
            for _ in range(120):
                sock.sendall(b" ")
                time.sleep(0.5)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _drain(sock, started + 90)
    return {
        "slow_body_answer": answer.split(b"\r\n", 1)[0].decode(errors="replace"),
        "answered_after_s": round(time.monotonic() - started, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--half", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch)
        registry = Registry(home / "models")
        for task in ("current", "next_year"):
            registry.promote(task, register_model(registry, task), reason="benchmark")
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--port", str(port), "--log-level", "error"],
            env=os.environ | {"PASSOS_HOME": str(home), "PASSOS_ID_SALT": "a-salt-for-the-benchmark"},
        )
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            result = {
                "machine": machine(),
                "limits": "defaults: 64 KiB of headers, 100 fields, 5 s for headers, 10 s for the body",
                "header_flood": header_flood(port, server.pid, args.mb),
                "half_requests": half_requests(port, args.half),
                "slow_body": slow_body(port),
                "still_serving": httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200,
            }
        finally:
            server.terminate()
            server.wait(timeout=10)
    save("floods", result)


if __name__ == "__main__":
    main()
