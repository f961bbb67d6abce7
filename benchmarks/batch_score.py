"""Batch scoring throughput: 1,000,000 synthetic student-years, Parquet to Parquet (measured, not asserted).

The input resamples, with replacement, the real rows of ``features_<task>`` from the warehouse
(new ``ra`` ids, so every row is distinct), written as Parquet with one row group per partition.
It is built in a child process so that the peak RSS reported is the scoring's own. Then
``flows/batch_score.py`` scores it on local threads (and with ``--dask`` on a two-process Dask
``LocalCluster``), after a small warm-up run that starts Prefect's temporary API server.

Needs a warehouse and a champion: ``passos ingest && passos train`` (or ``make pipeline``) first.

    PASSOS_HOME=... .venv/bin/python -m benchmarks.batch_score [--rows 1000000] [--task current] [--dask] [--reasons-rows 10000]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks._common import machine, save


def build_input(task: str, rows: int, path: str, row_group_rows: int, seed: int) -> dict[str, Any]:
    """Resample the real feature rows into ``rows`` student-years and write them as Parquet."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from warehouse.connection import connect

    started = time.perf_counter()
    with connect(read_only=True) as con:
        real = con.execute(f"select * from features_{task}").arrow()
    if hasattr(real, "read_all"):  # newer DuckDB returns a RecordBatchReader
        real = real.read_all()
    picks = np.random.default_rng(seed).integers(0, real.num_rows, rows)
    table = real.take(pa.array(picks))
    table = table.set_column(table.schema.get_field_index("ra"), "ra", pa.array([f"B{i:07d}" for i in range(rows)]))
    pq.write_table(table, path, row_group_size=row_group_rows)
    return {
        "real_rows": real.num_rows,
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 2),
        "bytes": Path(path).stat().st_size,
    }


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def timed_run(label: str, source: Path, out: Path, task: str, *, dask_address: str | None = None, **kw: Any) -> dict:
    from flows.batch_score import batch_score_flow

    print(f"[{label}] scoring {source.name} -> {out} ...", flush=True)
    started = time.perf_counter()
    summary = batch_score_flow(task=task, source=str(source), out=str(out), dask_address=dask_address, **kw)
    seconds = time.perf_counter() - started
    result = {
        "rows": summary["rows"],
        "partitions": summary["partitions"],
        "seconds_end_to_end": round(seconds, 2),
        "rows_per_s": round(summary["rows"] / seconds),
        "rows_per_s_inside_flow": summary["rows_per_s"],
        "high_risk": summary["high_risk"],
        "output_bytes": sum(p.stat().st_size for p in out.glob("part-*.parquet")),
        "peak_rss_mib_main_process": peak_rss_mib(),
    }
    print(f"[{label}] {result['rows']:,} rows in {seconds:.1f} s: {result['rows_per_s']:,} rows/s", flush=True)
    return result


def main() -> None:
    """Build the input, score it, write ``benchmarks/results/batch_score.json``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--task", default="current")
    parser.add_argument("--partition-rows", type=int, default=100_000)
    parser.add_argument("--dask", action="store_true", help="Also run on a 2-process Dask LocalCluster.")
    parser.add_argument(
        "--reasons-rows",
        type=int,
        default=0,
        help="Also time `batch-score --reasons` on this many rows, and SHAP alone (LightGBM's pred_contrib, the tables) on them.",
    )
    parser.add_argument("--skip-scores", action="store_true", help="Skip the run without reasons.")
    parser.add_argument("--skip-tables", action="store_true", help="Skip timing the SHAP tables alone.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from modeling.registry import Registry
    from passos.settings import get_settings

    settings = get_settings()
    version = Registry.from_settings(settings).champion(args.task)
    if version is None:
        sys.exit(f"no champion for {args.task!r} in {settings.models_dir}: run `passos ingest && passos train` first")
    info = machine() | {"load_average_before": os.getloadavg()}
    print(f"machine: {info.get('cpu')} ({info['cpus']} cores), python {info['python']}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="passos-bench-batch-"))
    try:
        source = work / "students.parquet"
        print(f"building {args.rows:,} synthetic student-years from features_{args.task} ...", flush=True)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            built = pool.apply(build_input, (args.task, args.rows, str(source), args.partition_rows, args.seed))
        print(f"input: {built['bytes'] / 2**20:.1f} MiB in {built['seconds']} s", flush=True)
        warm = work / "warm.parquet"
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            pool.apply(build_input, (args.task, 8_000, str(warm), 1_000, args.seed))
        with prefect_api():
            payload = score_all(args, settings, info, work, built, version)
        save("batch_score", payload)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def prefect_api() -> Iterator[None]:
    """``PREFECT_API_URL`` when set, else a temporary API server whose address reaches the Dask workers.

    Without an API address every Dask worker process would start a temporary server of its own.
    """
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        yield
        return
    from prefect.testing.utilities import prefect_test_harness

    print("starting a temporary Prefect API server ...", flush=True)
    with prefect_test_harness(server_startup_timeout=120):
        yield


def score_all(
    args: argparse.Namespace, settings: Any, info: dict[str, Any], work: Path, built: dict[str, Any], version: str
) -> dict[str, Any]:
    """The warm-up and the timed runs; the results payload."""
    from flows.batch_score import batch_score_flow

    source, warm = work / "students.parquet", work / "warm.parquet"
    print("warm-up ...", flush=True)
    batch_score_flow(task=args.task, source=str(warm), out=str(work / "warm-out"), partition_rows=1_000)
    rss_before = peak_rss_mib()
    runs: dict[str, Any] = {}
    if not args.skip_scores:
        runs["local_threads"] = timed_run(
            f"threads x{settings.batch_workers or info['cpus']}",
            source,
            work / "out-local",
            args.task,
            partition_rows=args.partition_rows,
        )
    if args.reasons_rows:
        reasons_source = work / "reasons.parquet"
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            pool.apply(build_input, (args.task, args.reasons_rows, str(reasons_source), 5_000, 1))
        runs["local_threads_with_reasons"] = timed_run(
            "reasons", reasons_source, work / "out-reasons", args.task, reasons=True, partition_rows=args.partition_rows
        )
        runs["shap_alone_same_rows"] = shap_alone(
            settings,
            args.task,
            version,
            reasons_source,
            int(settings.batch_workers or info["cpus"]),
            not args.skip_tables,
        )
        runs["reasons_vs_lightgbm_pred_contrib"] = round(
            runs["local_threads_with_reasons"]["rows_per_s"]
            / runs["shap_alone_same_rows"]["lightgbm_pred_contrib"]["rows_per_s"],
            3,
        )
    if args.dask:
        runs["dask_local_cluster"] = run_on_dask(source, work, args)
    payload = {
        "benchmark": "batch_score",
        "task": args.task,
        "model_version": version,
        "model_kind": _kind(settings, args.task, version),
        "input": built | {"partition_rows": args.partition_rows},
        "peak_rss_mib_after_warmup": rss_before,
        "runs": runs,
        "target_rows_per_s": 70_000,
        "machine": info,
        "load_average_after": os.getloadavg(),
    }
    return payload


def shap_alone(settings: Any, task: str, version: str, source: Path, cores: int, tables: bool = True) -> dict[str, Any]:
    """SHAP alone on the same rows and cores: LightGBM's ``pred_contrib`` and the bundle's tables.

    Both over the trees the service scores with (the champion's members folded into one
    booster), on the encoded matrix already in memory: no reading, routing, reasons or writing.
    LightGBM uses ``cores`` OpenMP threads; the tables run on ``cores`` Python threads, a slice
    of rows each (numpy releases the GIL in its loops).
    """
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import pyarrow.parquet as pq

    from features.featuresets import encode_frame
    from modeling.registry import Registry

    model, _ = Registry.from_settings(settings).load_checked(task, version)
    matrix = encode_frame(pq.read_table(source).to_pandas(), task)
    print(f"[shap alone] {len(matrix):,} rows on {cores} cores ...", flush=True)
    started = time.perf_counter()
    expected = model.folded.predict(matrix, pred_contrib=True, num_threads=cores)
    lightgbm_s = time.perf_counter() - started
    out: dict[str, Any] = {
        "rows": len(matrix),
        "cores": cores,
        "trees": model.folded.num_trees(),
        "lightgbm_pred_contrib": {"seconds": round(lightgbm_s, 2), "rows_per_s": round(len(matrix) / lightgbm_s)},
    }
    if tables:
        shap = model.shap_tables()
        slices = np.array_split(np.arange(len(matrix)), cores)
        started = time.perf_counter()
        with ThreadPoolExecutor(cores) as pool:
            parts = list(pool.map(lambda rows: shap.contributions(matrix[rows]), slices))
        tables_s = time.perf_counter() - started
        out["tables"] = {"seconds": round(tables_s, 2), "rows_per_s": round(len(matrix) / tables_s)}
        out["tables_vs_pred_contrib"] = round(lightgbm_s / tables_s, 3)
        out["largest_difference"] = float(np.abs(np.vstack(parts) - expected).max())
    print(f"[shap alone] {out}", flush=True)
    return out


def run_on_dask(source: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The same scoring on a two-process LocalCluster (one thread each), with the workers' peak RSS."""
    from distributed import Client, LocalCluster

    from flows.batch_score import batch_score_flow

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        address = cluster.scheduler_address
        # several partitions, so that every worker imports the code and loads the model before timing
        batch_score_flow(
            task=args.task,
            source=str(work / "warm.parquet"),
            out=str(work / "warm-dask"),
            dask_address=address,
            partition_rows=1_000,
        )
        result = timed_run(
            "dask 2 processes",
            source,
            work / "out-dask",
            args.task,
            dask_address=address,
            partition_rows=args.partition_rows,
        )
        # VmHWM, not ru_maxrss: Linux carries the parent's peak across fork+exec into ru_maxrss
        result["peak_rss_mib_workers"] = list(client.run(_vm_hwm_mib).values())
    return result


def _vm_hwm_mib() -> float:
    """This process's own peak resident memory (``VmHWM``), in MiB."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return round(int(line.split()[1]) / 1024, 1)


def _kind(settings: Any, task: str, version: str) -> str:
    from modeling.registry import Registry

    return str(Registry.from_settings(settings).metadata(task, version).get("kind"))


if __name__ == "__main__":
    main()
