"""Exact SHAP for one row, three ways, over the `current` champion's trees (measured, not asserted).

Per member (LightGBM's ``pred_contrib`` once per cross-fitted member, then the mean), on the
folded booster (one ``pred_contrib`` call), and by the bundle's tables (``modeling/treeshap.py``);
also ``ModelBundle.explain`` (score, reasons) and a raw ``predict`` on the folded booster. Each is
the median over ``--calls`` calls on each of ``--rows`` real rows, one thread; the three SHAP
results are checked equal. Writes ``results/shap_one_row.json``.

    PASSOS_HOME=var .venv/bin/python -m benchmarks.shap_one_row [--rows 50] [--calls 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from benchmarks._common import machine, save


def median_us(call: Callable[[], Any], calls: int) -> float:
    call()
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()

    from features.featuresets import encode_frame
    from modeling.registry import Registry
    from passos.settings import get_settings
    from warehouse.connection import connect

    registry = Registry.from_settings(get_settings())
    version = registry.champion("current") or ""
    model, _ = registry.load_checked("current", version)
    with connect(read_only=True) as con:
        frame = con.execute("select * from features_current").df()
    X = encode_frame(frame, "current")
    picks = np.random.default_rng(0).choice(len(X), size=min(args.rows, len(X)), replace=False)
    booster, tables = model.folded, model.shap_tables()
    ways: dict[str, Callable[[np.ndarray], Any]] = {
        "pred_contrib_per_member": lambda row: np.mean(
            [m.predict(row, pred_contrib=True, num_threads=1) for m in model.members], axis=0
        ),
        "pred_contrib_folded": lambda row: booster.predict(row, pred_contrib=True, num_threads=1),
        "tables": tables.contributions,
        "bundle_explain": model.explain,
        "raw_predict_folded": lambda row: booster.predict(row, raw_score=True, num_threads=1),
    }
    load_before = os.getloadavg()
    per_row: dict[str, list[float]] = {name: [] for name in ways}
    largest = 0.0
    for i in picks.tolist():
        row = np.ascontiguousarray(X[i : i + 1])
        values = [ways[name](row) for name in ("pred_contrib_per_member", "pred_contrib_folded", "tables")]
        largest = max(largest, float(np.abs(values[0] - values[1]).max()), float(np.abs(values[0] - values[2]).max()))
        for name, way in ways.items():
            per_row[name].append(median_us(partial(way, row), args.calls))
    medians = {name: round(statistics.median(v), 1) for name, v in per_row.items()}
    save(
        "shap_one_row",
        {
            "benchmark": "shap_one_row",
            "model_version": version,
            "members": len(model.members),
            "trees": booster.num_trees(),
            "rows": len(picks),
            "calls_per_row": args.calls,
            "median_us": medians,
            "tables_speedup_vs_pred_contrib_folded": round(medians["pred_contrib_folded"] / medians["tables"], 2),
            "tables_speedup_vs_pred_contrib_per_member": round(
                medians["pred_contrib_per_member"] / medians["tables"], 2
            ),
            "largest_difference": largest,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "machine": machine(),
        },
    )


if __name__ == "__main__":
    main()
