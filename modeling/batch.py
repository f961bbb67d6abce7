"""Batch scoring at scale: the partitions of a Parquet input, each scored by a task's champion into a part.

The input's row groups are grouped into partitions of about ``PASSOS_BATCH_PARTITION_ROWS``
rows; one call of :func:`score_partition` reads a partition's row groups, scores them and writes
one Parquet part. Parts are written into a hidden staging folder that :func:`publish` renames
into place once every partition is done, so a reader never sees half a result. The flow
(``flows/batch_score.py``) says where the partitions run: local threads or a Dask cluster.

Output columns: ``ra, year, task, model_version, risk_score, risk_label, variant, segment,
scored_at`` (plus ``reasons``, a JSON list, when asked: LightGBM SHAP reasons cost ~0.1-0.25 s per
1,000 rows); ``variant`` and ``segment`` are the served variant that answered and whose operating
point labelled the row, as ``/predict`` names them.
Every row is routed and labelled by the scoring core (``modeling/scoring.py``), as ``/predict``
answers it: a row no served variant can take has a null ``risk_score`` and ``risk_label`` "unknown".
There is no global rank: sort by ``risk_score`` when reading (``rank`` is per year in
``risk_scores``, which ``passos score`` fills).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.featuresets import encode_frame, feature_names
from modeling.registry import Registry
from modeling.scoring import HIGH, score_rows
from passos.errors import SourceError
from passos.settings import Settings

logger = logging.getLogger(__name__)

MANIFEST = "_manifest.json"  # pyarrow and DuckDB skip names starting with "_" when reading the folder
ID_COLUMNS = ("ra", "year")


@dataclass(frozen=True)
class Partition:
    """Consecutive row groups of one Parquet file, scored by one task into ``part-<index>.parquet``."""

    index: int
    path: str
    row_groups: tuple[int, ...]
    rows: int


def parquet_files(source: Path) -> list[Path]:
    """The Parquet files of ``source`` (a file, or a folder searched recursively, in name order)."""
    if source.is_dir():
        files = sorted(p for p in source.rglob("*.parquet") if not p.name.startswith((".", "_")))
        if not files:
            raise SourceError(str(source), "no .parquet files in this folder")
        return files
    if not source.is_file():
        raise SourceError(str(source), "no such file or folder")
    return [source]


def check_columns(files: list[Path], task_name: str) -> None:
    """Raise :class:`SourceError` naming the columns a file lacks (``ra``, ``year`` and every feature)."""
    needed = [*ID_COLUMNS, *feature_names(task_name)]
    for path in files:
        try:
            names = set(pq.read_schema(path).names)
        except (OSError, pa.ArrowInvalid) as error:
            raise SourceError(str(path), f"not a readable Parquet file: {error}") from None
        missing = [c for c in needed if c not in names]
        if missing:
            raise SourceError(str(path), f"missing column(s) {', '.join(missing)} needed by task {task_name!r}")


def plan_partitions(files: list[Path], *, partition_rows: int) -> list[Partition]:
    """Group each file's row groups, in order, into partitions of at least ``partition_rows`` rows.

    A partition never spans two files and never splits a row group, so a task reads exactly its
    own bytes; write inputs with row groups no larger than the partitions you want.
    """
    if partition_rows < 1:
        raise ValueError(f"partition_rows must be >= 1, got {partition_rows}")
    partitions: list[Partition] = []
    for path in files:
        meta = pq.ParquetFile(path).metadata
        groups: list[int] = []
        rows = 0
        for group in range(meta.num_row_groups):
            groups.append(group)
            rows += meta.row_group(group).num_rows
            if rows >= partition_rows:
                partitions.append(Partition(len(partitions), str(path), tuple(groups), rows))
                groups, rows = [], 0
        if groups:
            partitions.append(Partition(len(partitions), str(path), tuple(groups), rows))
    return partitions


@lru_cache(maxsize=4)
def _champion_model(models_dir: str, task_name: str, version: str) -> Any:
    # One load per worker process and version, not one per partition.
    model, _ = Registry(Path(models_dir)).load_checked(task_name, version)
    return model


def score_table(
    model: Any,
    version: str,
    table: pa.Table,
    *,
    task: str,
    scored_at: datetime,
    reasons: bool = False,
    top: int = 3,
) -> pa.Table:
    """Score the rows of an Arrow table holding ``ra``, ``year`` and the task's features, in input order.

    Each row is answered as ``/predict`` answers it (``modeling.scoring.score_rows``): by the
    richest served variant its known features allow, at that variant's threshold; a row none can
    take has a null ``risk_score`` and ``risk_label`` "unknown".
    """
    frame = table.select(feature_names(task)).to_pandas()
    scored = score_rows(model, encode_frame(frame, task), reasons=reasons, top=top)
    rows = table.num_rows
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "ra": table.column("ra").cast(pa.string()),
        "year": table.column("year").cast(pa.int64()),
        "task": pa.repeat(task, rows),
        "model_version": pa.repeat(version, rows),
        "risk_score": pa.array(scored.scores, mask=np.isnan(scored.scores), type=pa.float64()),
        "risk_label": pa.array(scored.labels(), type=pa.string()),
        "variant": pa.array(scored.variants(), type=pa.string()),
        "segment": pa.array(scored.segments, type=pa.string()),
    }
    if reasons:
        columns["reasons"] = pa.array([json.dumps(r, ensure_ascii=False) for r in scored.reasons], type=pa.string())
    columns["scored_at"] = pa.repeat(pa.scalar(scored_at.replace(tzinfo=None), type=pa.timestamp("us")), rows)
    return pa.table(columns)


def score_partition(
    partition: Partition,
    *,
    models_dir: str,
    task_name: str,
    version: str,
    out_dir: str,
    scored_at: datetime,
    reasons: bool = False,
) -> int:
    """Read, score and write one partition as ``out_dir/part-<index>.parquet``; the number of rows."""
    model = _champion_model(models_dir, task_name, version)
    table = pq.ParquetFile(partition.path).read_row_groups(
        list(partition.row_groups), columns=[*ID_COLUMNS, *feature_names(task_name)]
    )
    scored = score_table(model, version, table, task=task_name, scored_at=scored_at, reasons=reasons)
    target = Path(out_dir) / f"part-{partition.index:05d}.parquet"
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}")
    pq.write_table(scored, temporary)
    os.replace(temporary, target)  # a retried task overwrites its part whole
    return scored.num_rows


def publish(staging: Path, out_dir: Path) -> None:
    """Rename the finished staging folder into ``out_dir``, replacing an earlier batch-score output there."""
    if out_dir.exists():
        if not (out_dir / MANIFEST).is_file():
            raise FileExistsError(f"{out_dir} exists and is not a batch-score output: choose another `out`")
        shutil.rmtree(out_dir)
    os.rename(staging, out_dir)


def staging_folder(settings: Settings, task_name: str, out: str | None, started: datetime) -> tuple[Path, Path]:
    """The output folder (default ``$PASSOS_HOME/batch_scores/<task>-<UTC time>``) and a new hidden staging one."""
    out_dir = Path(out) if out else settings.home / "batch_scores" / f"{task_name}-{started:%Y%m%dT%H%M%SZ}"
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".tmp-{out_dir.name}-{secrets.token_hex(4)}"
    staging.mkdir()
    return out_dir, staging


def finish(
    staging: Path,
    out_dir: Path,
    *,
    source: str,
    task_name: str,
    version: str,
    rows: int,
    partitions: int,
    started: datetime,
) -> dict[str, Any]:
    """Write the manifest, publish the staging folder as ``out_dir``, and return the run's summary."""
    shutil.rmtree(staging / "_input", ignore_errors=True)
    high = count_high(staging)
    seconds = (datetime.now(UTC) - started).total_seconds()
    summary = {
        "task": task_name,
        "model_version": version,
        "source": source,
        "out": str(out_dir),
        "rows": rows,
        "partitions": partitions,
        "high_risk": high,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds, 1) if seconds > 0 else None,
        "scored_at": started.isoformat(),
    }
    (staging / MANIFEST).write_text(json.dumps(summary, indent=2) + "\n")
    publish(staging, out_dir)
    return summary


def count_high(folder: Path) -> int:
    """How many rows of the parts in ``folder`` are labelled high risk."""
    parts = sorted(folder.glob("part-*.parquet"))
    return sum(
        int(pc.sum(pc.equal(pq.read_table(p, columns=["risk_label"])["risk_label"], HIGH)).as_py() or 0) for p in parts
    )


def read_scores(out: str | Path) -> pd.DataFrame:
    """A batch-score output folder as one DataFrame, in input order (parts in order)."""
    parts = sorted(Path(out).glob("part-*.parquet"))
    if not parts:
        return pd.DataFrame()
    return pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)
