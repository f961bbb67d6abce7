"""API latency and throughput: concurrency 1 and 16, tracing off / fallback / on, and a batch of 1,000.

Usage: .venv/bin/python benchmarks/api.py [--seconds 10]
Needs a trained registry in $PASSOS_HOME (run `make pipeline` first). Starts `passos serve` (one
uvicorn worker) per tracing mode, and a bare FastAPI + LightGBM endpoint as the baseline. The load
generators run on the same 2 cores: our asyncio client (Python, costs a core itself) and, when
the Debian package is installed, wrk (C, one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import load, load_wrk, machine, percentiles, save
from tests.serving.otlp_receiver import OtlpReceiver

EXAMPLE = {"inde": 7.5, "iaa": 8.0, "ips": 6.5, "ipp": 7.0, "ipv": 7.2, "fase": 3}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(env: dict[str, str], *, bare: bool = False) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = ["-m", "benchmarks._bare_app", str(port)] if bare else ["-m", "passos.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(
        [sys.executable, *command, *([] if bare else ["--log-level", "warning"])],
        env=os.environ | env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            probe = httpx.post(f"{url}/predict", json={}, timeout=1) if bare else httpx.get(f"{url}/ready", timeout=1)
            if probe.status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("the service did not become ready: is there a trained registry in $PASSOS_HOME?")


def measure(url: str, seconds: float, *, batches: bool = True) -> dict[str, object]:
    body = json.dumps(EXAMPLE).encode()
    load(url, "/predict", body, concurrency=4, seconds=1.0)  # warm-up
    out: dict[str, object] = {
        "c1": load(url, "/predict", body, concurrency=1, seconds=seconds),
        "c16": load(url, "/predict", body, concurrency=16, seconds=seconds),
    }
    for concurrency in (1, 16):
        measured = load_wrk(url, "/predict", body, concurrency=concurrency, seconds=seconds)
        if measured is not None:
            out[f"c{concurrency}_wrk"] = measured
    if not batches:
        return out
    students = [EXAMPLE | {"ida": float(i % 10)} for i in range(1000)]
    with httpx.Client(base_url=url, timeout=30) as client:
        for reasons in (True, False):
            batch = json.dumps({"students": students, "include_reasons": reasons})
            timings = []
            for _ in range(20):
                started = time.perf_counter()
                response = client.post("/predict/batch", content=batch, headers={"content-type": "application/json"})
                assert response.status_code == 200
                timings.append(time.perf_counter() - started)
            out["batch_1000_with_reasons" if reasons else "batch_1000_scores_only"] = percentiles(timings)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    results: dict[str, object] = {"machine": machine(), "seconds_per_run": args.seconds}
    base = {"PASSOS_API_KEY": "", "LANGFUSE_PUBLIC_KEY": "", "LANGFUSE_SECRET_KEY": ""}
    process, url = serve({}, bare=True)
    try:
        results["baseline: bare FastAPI + the same LightGBM booster"] = measure(url, args.seconds, batches=False)
    finally:
        process.terminate()
        process.wait(timeout=30)
    modes = {
        "off (LANGFUSE_TRACING_ENABLED=false; local log only)": base | {"LANGFUSE_TRACING_ENABLED": "false"},
        "fallback (tracing on, no Langfuse keys: local log only)": base,
    }
    with OtlpReceiver("ok") as receiver:
        modes["on (local OTLP receiver)"] = base | {
            "LANGFUSE_TRACING_ENABLED": "true",
            "LANGFUSE_PUBLIC_KEY": "pk-lf-bench",
            "LANGFUSE_SECRET_KEY": "sk-lf-bench",
            "LANGFUSE_BASE_URL": receiver.base_url,
        }
        for name, env in modes.items():
            process, url = serve({k: v for k, v in env.items() if v != ""})
            try:
                results[name] = measure(url, args.seconds)
            finally:
                process.terminate()
                process.wait(timeout=30)
        results["spans_received_in_on_mode"] = len(receiver.spans)
    save("api", results)


if __name__ == "__main__":
    main()
