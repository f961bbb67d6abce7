"""Shared helpers of the benchmarks: machine description, results, a fast HTTP/1.1 load generator."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the benchmark ran on."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        with open("/proc/cpuinfo") as handle:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
        with open("/proc/meminfo") as handle:
            info["memory_gib"] = round(int(handle.readline().split()[1]) / 1024 / 1024, 1)
    except (OSError, StopIteration):
        pass
    return info


def save(name: str, payload: dict[str, Any]) -> Path:
    """Write ``results/<name>.json`` and print it."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(json.dumps(payload, indent=2, default=str))
    return path


def percentiles(latencies: list[float]) -> dict[str, float]:
    """p50/p95/p99 in milliseconds."""
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {
        "p50_ms": at(0.50),
        "p95_ms": at(0.95),
        "p99_ms": at(0.99),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
    }


async def _worker(
    host: str, port: int, request: bytes, until: float, latencies: list[float], errors: list[str]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors.append(str(status))
    finally:
        writer.close()


def load(
    url: str, path: str, body: bytes, *, concurrency: int, seconds: float, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Keep ``concurrency`` keep-alive connections busy for ``seconds``; latency and throughput."""
    host, port = url.removeprefix("http://").split(":")
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    errors: list[str] = []

    async def run() -> float:
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(*(_worker(host, int(port), request, until, latencies, errors) for _ in range(concurrency)))
        return time.perf_counter() - started

    elapsed = asyncio.run(run())
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": len(errors),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        **percentiles(latencies),
    }


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%f %%f %%f %%f\\n", summary.requests, e.connect + e.read + e.write + e.timeout,
    e.status, summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean))
end
"""


def load_wrk(url: str, path: str, body: bytes, *, concurrency: int, seconds: float) -> dict[str, Any] | None:
    """The same measurement with wrk (a C load generator, Debian package `wrk`) when it is installed."""
    import shutil
    import subprocess
    import tempfile

    if shutil.which("wrk") is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT % body.decode())
    run = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "-s", script.name, f"{url}{path}"],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in run.stdout.splitlines() if line.startswith("RESULT"))
    requests, socket_errors, status_errors, duration_us, p50, p95, p99, mean = line.split()[1:]
    return {
        "generator": "wrk -t1",
        "concurrency": concurrency,
        "requests": int(requests),
        "errors": int(socket_errors) + int(status_errors),
        "requests_per_s": round(int(requests) / (int(duration_us) / 1e6), 1),
        "p50_ms": round(float(p50) / 1000, 3),
        "p95_ms": round(float(p95) / 1000, 3),
        "p99_ms": round(float(p99) / 1000, 3),
        "mean_ms": round(float(mean) / 1000, 3),
    }
