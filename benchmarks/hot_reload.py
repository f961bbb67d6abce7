"""Hot reload under load: failed requests (must be 0) and the time until the new version is served.

Usage: .venv/bin/python benchmarks/hot_reload.py [--rounds 5]
A temporary registry with two accepted versions per task (small models on synthetic data), one
`passos serve` process, 8 client connections posting continuously, and `--rounds` promotions and
rollbacks of the `current` champion.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import machine, save
from benchmarks.api import free_port
from modeling.registry import Registry
from tests.factories import register_model

EXAMPLE = json.dumps({"inde": 7.5, "iaa": 8.0, "ips": 6.5, "ipp": 7.0, "ipv": 7.2, "fase": 3})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch)
        registry = Registry(home / "models")
        versions = {}
        for task in ("current", "next_year"):
            first = register_model(registry, task, kind="lightgbm", seed=0)
            versions[task] = (first, register_model(registry, task, kind="logistic", seed=1))
            registry.promote(task, first, reason="benchmark")
        port = free_port()
        env = os.environ | {
            "PASSOS_HOME": str(home),
            "LANGFUSE_TRACING_ENABLED": "false",
            "PASSOS_ID_SALT": "a-salt-for-the-benchmark",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--port", str(port), "--log-level", "warning"], env=env
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            stop = threading.Event()
            counts = {"ok": 0, "failed": 0}
            lock = threading.Lock()

            def client() -> None:
                with httpx.Client(base_url=url, timeout=10) as http:
                    while not stop.is_set():
                        try:
                            ok = (
                                http.post(
                                    "/predict", content=EXAMPLE, headers={"content-type": "application/json"}
                                ).status_code
                                == 200
                            )
                        except httpx.HTTPError:
                            ok = False
                        with lock:
                            counts["ok" if ok else "failed"] += 1

            threads = [threading.Thread(target=client) for _ in range(8)]
            for thread in threads:
                thread.start()
            first, second = versions["current"]
            delays = []
            with httpx.Client(base_url=url, timeout=5) as http:
                for _ in range(args.rounds):
                    for action, expected in (("promote", second), ("rollback", first)):
                        time.sleep(0.5)
                        started = time.perf_counter()
                        if action == "promote":
                            registry.promote("current", second, reason="benchmark")
                        else:
                            registry.rollback("current")
                        while (
                            http.post("/predict", content=EXAMPLE, headers={"content-type": "application/json"}).json()[
                                "model_version"
                            ]
                            != expected
                        ):
                            time.sleep(0.005)
                        delays.append(time.perf_counter() - started)
            stop.set()
            for thread in threads:
                thread.join()
        finally:
            process.terminate()
            process.wait(timeout=30)
    save(
        "hot_reload",
        {
            "machine": machine(),
            "swaps": len(delays),
            "requests": counts["ok"] + counts["failed"],
            "failed_requests": counts["failed"],
            "seconds_until_served": {"max": round(max(delays), 3), "mean": round(sum(delays) / len(delays), 3)},
            "reload_interval_s": 0.5,
        },
    )


if __name__ == "__main__":
    main()
