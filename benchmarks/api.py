"""API latency and throughput: bare endpoints and `passos serve` with 1, 2 and 4 workers, in one run.

Usage: .venv/bin/python benchmarks/api.py [--seconds 10] [--rounds 3] [--workers 1,2,4] [--tracing]
Needs a trained registry in $PASSOS_HOME (run `make pipeline` first). Starts two bare FastAPI +
LightGBM endpoints over the trees the service scores with (``benchmarks/_bare_app.py``): one
that only predicts (the baseline of the goals) and one that also answers LightGBM's own
``pred_contrib`` reasons. Then `passos serve --workers N` for each N (no Langfuse keys: the
local prediction log only), and with --tracing also one worker tracing to a local OTLP
receiver. Every service is sent the complete example, which the `full` variant answers with
reasons (checked before timing). All run at once; --rounds interleaved rounds measure each at
concurrency 1 and 16 (keep-alive connections) and the medians over the rounds are reported; the
1-worker service is also timed with a batch of 1,000. The load generators run on the same 2
cores: our asyncio client (Python, costs a core itself) and, when the Debian package is
installed, wrk (C, one thread). The summary compares each service with the bare endpoints of the
same run and checks the single-worker goals against the predict-only bare endpoint: throughput
>= 0.8x at c=16, p99 <= 1.25x at c=16, p50 within 0.3 ms at c=1.
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
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import load, load_wrk, machine, percentiles, save
from serving.schemas import FULL_EXAMPLE
from tests.support.otlp_receiver import OtlpReceiver

# A student the `full` variant scores (with reasons): the six-field example payload is answered
# "unknown" by the current champions, which would measure a path that never reaches the model.
EXAMPLE = {k: v for k, v in FULL_EXAMPLE.items() if k != "task"}
# The bare endpoint takes numbers only: the same student without the two categories.
BARE_EXAMPLE = {k: v for k, v in EXAMPLE.items() if isinstance(v, int | float)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(
    env: dict[str, str], *, bare: bool = False, workers: int = 1, contrib: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    if bare:
        command = ["-m", "benchmarks._bare_app", str(port), *(["--contrib"] if contrib else [])]
    else:
        command = [
            "-m",
            "cli",
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


def measure(url: str, seconds: float, payload: dict[str, Any]) -> dict[str, Any]:
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


def median_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per load level, the median over the rounds of each figure (the rounds themselves are kept too)."""
    out: dict[str, Any] = {}
    for level in rounds[0]:
        runs = [r[level] for r in rounds]
        keys = [k for k, v in runs[0].items() if isinstance(v, int | float) and k != "concurrency"]
        out[level] = {k: statistics.median(run[k] for run in runs) for k in keys}
        out[level]["errors"] = sum(run["errors"] for run in runs)
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


def compare(measured: dict[str, Any], bare: dict[str, Any], suffix: str = "") -> dict[str, float]:
    """A service against a bare endpoint: the three figures the goals are about."""
    return {
        "c16_throughput_ratio": round(
            measured[f"c16{suffix}"]["requests_per_s"] / bare[f"c16{suffix}"]["requests_per_s"], 3
        ),
        "c16_p99_ratio": round(measured[f"c16{suffix}"]["p99_ms"] / bare[f"c16{suffix}"]["p99_ms"], 3),
        "c1_p50_difference_ms": round(measured[f"c1{suffix}"]["p50_ms"] - bare[f"c1{suffix}"]["p50_ms"], 3),
    }


def summary(results: dict[str, Any], bare_name: str, contrib_name: str) -> dict[str, Any]:
    """Each service against the bare endpoints of the same run, and the single-worker goals."""
    bare, contrib = results[bare_name], results[contrib_name]
    out: dict[str, Any] = {}
    for name, measured in results.items():
        if name in (bare_name, contrib_name) or not isinstance(measured, dict) or "c16" not in measured:
            continue
        out[name] = {
            "c1_p50_ms": measured["c1"]["p50_ms"],
            "c16_requests_per_s": measured["c16"]["requests_per_s"],
            "c16_p99_ms": measured["c16"]["p99_ms"],
            "vs_bare_predict_only": compare(measured, bare),
            "vs_bare_with_lightgbm_pred_contrib": compare(measured, contrib),
        }
        if "c16_wrk" in measured and "c16_wrk" in bare:
            out[name]["vs_bare_predict_only_wrk"] = compare(measured, bare, "_wrk")
    out["bare_with_pred_contrib_vs_bare_predict_only"] = compare(contrib, bare)
    single = next((v for k, v in out.items() if k.startswith("1 worker")), None)
    if isinstance(single, dict):
        against = single["vs_bare_predict_only"]
        out["single_worker_goals"] = {
            "c16 throughput >= 0.8x bare": _verdict(against["c16_throughput_ratio"] >= 0.8),
            "c16 p99 <= 1.25x bare": _verdict(against["c16_p99_ratio"] <= 1.25),
            "c1 p50 within 0.3 ms of bare": _verdict(against["c1_p50_difference_ms"] <= 0.3),
        }
    return out


def _verdict(met: bool) -> str:
    return "met" if met else "missed"


def answered_by_full(url: str) -> dict[str, Any]:
    """The service's answer to the benchmark's payload: it must be `full` with reasons, not "unknown"."""
    answer = httpx.post(f"{url}/predict", json=EXAMPLE, timeout=10).json()
    if answer.get("variant") != "full" or not answer.get("reasons"):
        raise SystemExit(f"the complete example is not answered by `full` with reasons: {answer}")
    return {k: answer.get(k) for k in ("variant", "risk_label", "risk_score", "reasons")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per load level per mode, in all")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds the seconds are split into")
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--tracing", action="store_true", help="also 1 worker tracing to a local OTLP receiver")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": machine(),
        "seconds_per_level_per_mode": args.seconds,
        "rounds": args.rounds,
        "load_average_before": os.getloadavg(),
    }
    no_keys = {"PASSOS_API_KEY": "", "LANGFUSE_PUBLIC_KEY": "", "LANGFUSE_SECRET_KEY": ""}
    bare_name = "baseline: bare FastAPI + the same LightGBM trees, predict only"
    contrib_name = "baseline: bare FastAPI + the same LightGBM trees, with pred_contrib reasons"
    with contextlib.ExitStack() as stack:
        receiver = stack.enter_context(OtlpReceiver("ok"))
        modes: dict[str, tuple[dict[str, str], bool, int]] = {bare_name: ({}, True, 1), contrib_name: ({}, True, 1)}
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
            process, urls[name] = serve(
                {k: v for k, v in env.items() if v != ""}, bare=bare, workers=workers, contrib=name == contrib_name
            )
            stack.callback(_stop, process)
        payloads = {name: BARE_EXAMPLE if modes[name][1] else EXAMPLE for name in modes}
        first_service = next(name for name in modes if not modes[name][1])
        results["answer_timed"] = answered_by_full(urls[first_service])
        for name, url in urls.items():
            load(url, "/predict", json.dumps(payloads[name]).encode(), concurrency=4, seconds=1.0)  # warm-up
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in modes}
        for _ in range(args.rounds):
            for name, url in urls.items():
                rounds[name].append(measure(url, args.seconds / args.rounds, payloads[name]))
        for name in modes:
            results[name] = median_of(rounds[name])
        results[first_service] |= batches(urls[first_service])
        results["spans_received_in_on_mode"] = len(receiver.spans)
    results["load_average_after"] = os.getloadavg()
    results["summary"] = summary(results, bare_name, contrib_name)
    save("api", results)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


if __name__ == "__main__":
    main()
