"""Baselines for benchmarks/api.py: a bare FastAPI endpoint around the served trees.

No validation beyond FastAPI's, no derived features, no calibration, no routing, no logging and
no tracing: the cost floor of "FastAPI + LightGBM" on this machine. The booster is the one the
service scores with (the champion's members folded into one booster). With ``--contrib`` the
endpoint also answers the top three pushes from LightGBM's own ``pred_contrib`` over the same
trees: the floor of "FastAPI + LightGBM with reasons".
Usage: python -m benchmarks._bare_app PORT [--contrib]   (PASSOS_HOME must hold a `current` champion)
"""

from __future__ import annotations

import sys

import numpy as np
import uvicorn
from fastapi import FastAPI

from features.featuresets import feature_names
from modeling.registry import Registry
from passos.settings import get_settings


def build(*, contrib: bool = False) -> FastAPI:
    registry = Registry.from_settings(get_settings())
    model, _ = registry.load_checked("current", registry.champion("current") or "")
    booster = getattr(model, "folded", None) or model.estimator
    names = feature_names("current")
    app = FastAPI()

    # async def, like the service's routes: a plain def would run in FastAPI's thread pool and
    # make the baseline slower than the service it is the floor for (seen in an earlier run).
    if contrib:

        @app.post("/predict")
        async def predict_with_reasons(body: dict[str, float]) -> dict[str, object]:
            row = np.array([[body.get(name, np.nan) for name in names]], dtype=np.float64)
            pushes = booster.predict(row, pred_contrib=True, num_threads=1)[0]
            top = np.argsort(-pushes[:-1])[:3].tolist()
            return {
                "risk_score": float(pushes.sum()),
                "reasons": [{"feature": names[j], "contribution": float(pushes[j])} for j in top],
            }

    else:

        @app.post("/predict")
        async def predict(body: dict[str, float]) -> dict[str, float]:
            row = np.array([[body.get(name, np.nan) for name in names]], dtype=np.float64)
            return {"risk_score": float(booster.predict(row, raw_score=True, num_threads=1)[0])}

    return app


if __name__ == "__main__":
    app = build(contrib="--contrib" in sys.argv[2:])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
