"""API latency and throughput: the bare endpoint and `passos serve` with 1, 2 and 4 workers, in one run.

Usage: .venv/bin/python benchmarks/api.py [--seconds 10] [--rounds 3] [--workers 1,2,4] [--tracing]
Needs a trained registry in $PASSOS_HOME (run `make pipeline` first). Starts a bare FastAPI +
LightGBM endpoint as the baseline, then `passos serve --workers N` for each N (no Langfuse keys:
the local prediction log only), and with --tracing also one worker tracing to a local OTLP
receiver. All run at once; --rounds interleaved rounds measure each at concurrency 1 and 16
(keep-alive connections) and the medians over the rounds are reported; the 1-worker service is
also timed with a batch of 1,000. The load generators run on the same 2 cores: our asyncio
client (Python, costs a core itself) and, when the Debian package is installed, wrk (C, one
thread). The summary compares each service with the bare endpoint of the same run and checks
the single-worker goals: >= 0.6x bare at c=16, p99 <= 15 ms at c=16, p50 <= 1 ms at c=1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import load, load_wrk, machine, percentiles, save
from serving.schemas import FULL_EXAMPLE
from tests.serving.otlp_receiver import OtlpReceiver

# A student the `full` variant scores (with reasons): the six-field example payload is answered
# "unknown" by the current champions, which would measure a path that never reaches the model.
EXAMPLE = {k: v for k, v in FULL_EXAMPLE.items() if k != "task"}
# The bare endpoint takes numbers only: the same student without the two categories.
BARE_EXAMPLE = {k: v for k, v in EXAMPLE.items() if isinstance(v, int | float)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(env: dict[str, str], *, bare: bool = False, workers: int = 1) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    if bare:
        command = ["-m", "benchmarks._bare_app", str(port)]
    else:
        command = [
            "-m",
            "passos.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ]
    process = subprocess.Popen(
        [sys.executable, *command],
        env=os.environ | env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            probe = (
                httpx.post(f"{url}/predict", json=BARE_EXAMPLE, timeout=1)
                if bare
                else httpx.get(f"{url}/ready", timeout=1)
            )
            if probe.status_code == 200 and (bare or _every_worker_answers(url, workers, deadline)):
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("the service did not become ready: is there a trained registry in $PASSOS_HOME?")


def _every_worker_answers(url: str, workers: int, deadline: float) -> bool:
    """Wait until each worker has loaded its models (seen by its pid header on fresh connections)."""
    seen: set[str] = set()
    while len(seen) < workers and time.monotonic() < deadline:
        response = httpx.post(f"{url}/predict", json=EXAMPLE, timeout=5)
        if response.status_code == 200:
            seen.add(response.headers["x-worker-pid"])
    return len(seen) == workers


def measure(url: str, seconds: float, payload: dict[str, object]) -> dict[str, object]:
    """One slice: c=1 then c=16 on keep-alive connections (and wrk when installed)."""
    body = json.dumps(payload).encode()
    out: dict[str, object] = {
        "c1": load(url, "/predict", body, concurrency=1, seconds=seconds),
        "c16": load(url, "/predict", body, concurrency=16, seconds=seconds),
    }
    for concurrency in (1, 16):
        measured = load_wrk(url, "/predict", body, concurrency=concurrency, seconds=seconds)
        if measured is not None:
            out[f"c{concurrency}_wrk"] = measured
    return out


def median_of(rounds: list[dict[str, object]]) -> dict[str, object]:
    """Per load level, the median over the rounds of each figure (the rounds themselves are kept too)."""
    out: dict[str, object] = {}
    for level in rounds[0]:
        runs = [r[level] for r in rounds]
        keys = [k for k, v in runs[0].items() if isinstance(v, int | float) and k != "concurrency"]  # type: ignore[union-attr]
        out[level] = {k: statistics.median(run[k] for run in runs) for k in keys}  # type: ignore[index]
        out[level]["errors"] = sum(run["errors"] for run in runs)  # type: ignore[index]
    out["rounds"] = rounds
    return out


def batches(url: str) -> dict[str, object]:
    out: dict[str, object] = {}
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


def summary(results: dict[str, object], bare_name: str) -> dict[str, object]:
    """Each service against the bare endpoint of the same run, and the single-worker goals."""
    bare = results[bare_name]
    assert isinstance(bare, dict)
    out: dict[str, object] = {}
    for name, measured in results.items():
        if name == bare_name or not isinstance(measured, dict) or "c16" not in measured:
            continue
        out[name] = {
            "c16_vs_bare": round(measured["c16"]["requests_per_s"] / bare["c16"]["requests_per_s"], 2),
            "c1_p50_ms": measured["c1"]["p50_ms"],
            "c16_p99_ms": measured["c16"]["p99_ms"],
        }
    single = next((v for k, v in out.items() if k.startswith("1 worker")), None)
    if isinstance(single, dict):
        out["single_worker_goals"] = {
            "c16 >= 0.6x bare": "met" if single["c16_vs_bare"] >= 0.6 else "missed",
            "c16 p99 <= 15 ms": "met" if single["c16_p99_ms"] <= 15 else "missed",
            "c1 p50 <= 1 ms": "met" if single["c1_p50_ms"] <= 1 else "missed",
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per load level per mode, in all")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds the seconds are split into")
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--tracing", action="store_true", help="also 1 worker tracing to a local OTLP receiver")
    args = parser.parse_args()
    results: dict[str, object] = {
        "machine": machine(),
        "seconds_per_level_per_mode": args.seconds,
        "rounds": args.rounds,
        "load_average_before": os.getloadavg(),
    }
    no_keys = {"PASSOS_API_KEY": "", "LANGFUSE_PUBLIC_KEY": "", "LANGFUSE_SECRET_KEY": ""}
    bare_name = "baseline: bare FastAPI + the same LightGBM booster"
    with contextlib.ExitStack() as stack:
        receiver = stack.enter_context(OtlpReceiver("ok"))
        modes: dict[str, tuple[dict[str, str], bool, int]] = {bare_name: ({}, True, 1)}
        for workers in (int(n) for n in args.workers.split(",")):
            name = f"{workers} worker{'s' if workers > 1 else ''} (no Langfuse keys: local log only)"
            modes[name] = (no_keys, False, workers)
        if args.tracing:
            traced = no_keys | {
                "LANGFUSE_TRACING_ENABLED": "true",
                "LANGFUSE_PUBLIC_KEY": "pk-lf-bench",
                "LANGFUSE_SECRET_KEY": "sk-lf-bench",
                "LANGFUSE_BASE_URL": receiver.base_url,
            }
            modes["tracing on, 1 worker (SDK in a child process, local OTLP receiver)"] = (traced, False, 1)
        # Every mode runs at once and the rounds interleave them, so a change in the machine's
        # background load (a shared VM) hits every mode alike instead of whichever ran then.
        urls: dict[str, str] = {}
        for name, (env, bare, workers) in modes.items():
            process, urls[name] = serve({k: v for k, v in env.items() if v != ""}, bare=bare, workers=workers)
            stack.callback(_stop, process)
        payloads = {name: BARE_EXAMPLE if name == bare_name else EXAMPLE for name in modes}
        for name, url in urls.items():
            load(url, "/predict", json.dumps(payloads[name]).encode(), concurrency=4, seconds=1.0)  # warm-up
        rounds: dict[str, list[dict[str, object]]] = {name: [] for name in modes}
        for _ in range(args.rounds):
            for name, url in urls.items():
                rounds[name].append(measure(url, args.seconds / args.rounds, payloads[name]))
        for name in modes:
            results[name] = median_of(rounds[name])
        first_service = next(name for name in modes if name != bare_name)
        results[first_service] |= batches(urls[first_service])  # type: ignore[operator]
        results["spans_received_in_on_mode"] = len(receiver.spans)
    results["load_average_after"] = os.getloadavg()
    results["summary"] = summary(results, bare_name)
    save("api", results)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


if __name__ == "__main__":
    main()
