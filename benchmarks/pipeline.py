"""How the pipeline's cost grows with data: the real files, then 10x and 100x synthetic copies.

Usage: .venv/bin/python benchmarks/pipeline.py [--scales 1 10 100] [--data ../shared/data]
Synthetic data: every real row copied k times with the student id suffixed by the copy number
(so students still recur across years), written as pede_YYYY.csv. Each stage is timed without
Prefect (the flows wrap these same functions): ingestion (read, harmonise, load, Parquet),
feature building (the feature views, materialised), and training both tasks (all candidates).
The whole `pipeline_flow` (with Prefect's temporary server) is timed once on the real files.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import machine, save
from passos.settings import PROJECT_ROOT, Settings


def synthesise(source: Path, target: Path, scale: int) -> int:
    target.mkdir(parents=True, exist_ok=True)
    rows = 0
    for path in sorted(source.glob("pede_*.csv")):
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            body = list(reader)
        ra = header.index("RA")
        with (target / path.name).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for copy in range(scale):
                for row in body:
                    out = list(row)
                    out[ra] = f"{row[ra]}-{copy}" if scale > 1 else row[ra]
                    writer.writerow(out)
                    rows += 1
    return rows


def stages(folder: Path, home: Path, *, train: bool = True) -> dict[str, float]:
    from features.featuresets import TASKS
    from modeling.training import train_candidates
    from warehouse import loader
    from warehouse.connection import connect
    from warehouse.sources import discover

    settings = Settings(home=home)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    with connect(settings) as con:
        loader.ingest(con, "bench", discover([folder]))
        loader.export_parquet(con, settings.parquet_dir)
    timings["ingest_s"] = time.perf_counter() - started
    frames = {}
    started = time.perf_counter()
    with connect(settings, read_only=True) as con:
        for task in TASKS:
            frames[task] = con.execute(f"select * from features_{task}").df()
    timings["features_s"] = time.perf_counter() - started
    for task in TASKS if train else ():
        started = time.perf_counter()
        train_candidates(frames[task], task, recall_target=0.9, seed=42)
        timings[f"train_{task}_s"] = time.perf_counter() - started
    return {k: round(v, 2) for k, v in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--data", type=Path, default=PROJECT_ROOT.parent / "shared" / "data")
    parser.add_argument("--skip-train", action="store_true", help="Time ingestion and features only.")
    parser.add_argument("--skip-pipeline", action="store_true", help="Do not time the whole flow.")
    parser.add_argument("--name", default="pipeline", help="Results file name (benchmarks/results/NAME.json).")
    args = parser.parse_args()
    results: dict[str, object] = {"machine": machine()}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for scale in args.scales:
            folder = root / f"x{scale}"
            rows = synthesise(args.data, folder, scale)
            timings = stages(folder, root / f"home{scale}", train=not args.skip_train)
            results[f"x{scale}"] = {"student_years": rows, **timings}
            print(f"x{scale}: {rows} rows {timings}", flush=True)
            save(args.name, results)  # partial results survive a long or interrupted run
        if args.skip_pipeline:
            return
        import os

        from passos.settings import get_settings

        os.environ["PASSOS_HOME"] = str(root / "pipeline")
        os.environ.setdefault("PREFECT_HOME", str(root / "prefect"))
        os.environ.setdefault("PASSOS_GATE_MIN_RECALL_CURRENT", "0.75")
        os.environ.setdefault("PASSOS_GATE_MIN_RECALL_NEXT_YEAR", "0.75")
        (root / "prefect").mkdir(exist_ok=True)
        get_settings.cache_clear()
        from flows.pipeline import pipeline_flow

        started = time.perf_counter()
        pipeline_flow(data_dir=str(args.data), return_state=True)
        results["whole_pipeline_real_data_s"] = round(time.perf_counter() - started, 2)
    save(args.name, results)


if __name__ == "__main__":
    main()
