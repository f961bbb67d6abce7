"""Baseline for benchmarks/api.py: a bare FastAPI endpoint around the same LightGBM booster.

No validation beyond FastAPI's, no derived features, no calibration, no reasons, no logging and
no tracing: the cost floor of "FastAPI + LightGBM" on this machine.
Usage: python -m benchmarks._bare_app PORT   (PASSOS_HOME must hold a `current` champion)
"""

from __future__ import annotations

import sys

import numpy as np
import uvicorn
from fastapi import FastAPI

from features.featuresets import feature_names
from modeling.registry import Registry
from passos.settings import get_settings


def build() -> FastAPI:
    registry = Registry.from_settings(get_settings())
    model, _ = registry.load_checked("current", registry.champion("current") or "")
    names = feature_names("current")
    app = FastAPI()

    # async def, like the service's routes: a plain def would run in FastAPI's thread pool and
    # make the baseline slower than the service it is the floor for (seen in an earlier run).
    @app.post("/predict")
    async def predict(body: dict[str, float]) -> dict[str, float]:
        row = np.array([[body.get(name, np.nan) for name in names]], dtype=np.float64)
        return {"risk_score": float(model.estimator.predict(row, raw_score=True, num_threads=1)[0])}

    return app


if __name__ == "__main__":
    uvicorn.run(build(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
