"""Where a `/predict` request spends its time: pyinstrument over the app's own request path.

Usage: .venv/bin/pip install pyinstrument && PASSOS_HOME=var .venv/bin/python benchmarks/profile_api.py [--requests 3000]
Needs a trained registry in $PASSOS_HOME. The app runs in this process (its lifespan too) and is
called through httpx's ASGI transport, so the profile holds routing, validation, scoring, the
prediction log and the response, without the socket and HTTP parsing of uvicorn (which
benchmarks/api.py measures). Writes results/profile_api.txt. pyinstrument is a profiling tool,
not a project dependency.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import RESULTS
from serving.schemas import FULL_EXAMPLE

# The student benchmarks/api.py sends: one the `full` variant scores, with reasons.
EXAMPLE = {k: v for k, v in FULL_EXAMPLE.items() if k != "task"}


async def run(requests: int) -> str:
    from pyinstrument import Profiler

    from passos.settings import get_settings
    from serving.app import create_app

    settings = get_settings().model_copy(update={"langfuse_tracing_enabled": False})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _ in range(200):  # warm-up
                await client.post("/predict", json=EXAMPLE)
            profiler = Profiler(interval=0.001, async_mode="enabled")
            profiler.start()
            for _ in range(requests):
                response = await client.post("/predict", json=EXAMPLE)
                assert response.status_code == 200, response.text
            profiler.stop()
    return str(profiler.output_text(unicode=False, color=False, show_all=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    # a committed result names no path of the machine it ran on
    text = asyncio.run(run(args.requests)).replace(f"{Path(__file__).resolve().parent.parent}/", "")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "profile_api.txt").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
