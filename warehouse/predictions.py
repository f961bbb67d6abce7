"""Loading the service's prediction log (JSONL files) into the warehouse table ``predictions``.

The files are append-only and named uniquely, so a row is keyed by (file, line): a reload
reads only the lines past those already loaded. Loading twice changes nothing; every line
that parses becomes one row (a broken line is skipped and counted, never half-loaded).
The load reports how many bytes of each file it read through its last complete line
(``read_bytes``), which is what the log's retention needs to delete a file safely.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from warehouse.connection import replace_rows
from warehouse.contracts import CONTRACTS

log = logging.getLogger(__name__)
COLUMNS = CONTRACTS["predictions"]


@dataclass
class PredictionLoad:
    """What one load did."""

    files: int = 0
    rows_loaded: int = 0
    lines_skipped: int = 0
    read_bytes: dict[str, int] = field(default_factory=dict)
    """File name to the bytes read through its last complete line (every line in them is loaded or skipped)."""


def load_prediction_log(con: duckdb.DuckDBPyConnection, directory: Path) -> PredictionLoad:
    """Load the new lines of every ``predictions-*.jsonl`` file under ``directory``."""
    result = PredictionLoad()
    if not directory.is_dir():
        return result
    loaded = dict(con.execute("select file, max(line) from predictions group by file").fetchall())
    rows = []
    for path in sorted(directory.glob("predictions-*.jsonl")):
        result.files += 1
        done = loaded.get(path.name, 0)
        read = 0
        with path.open("rb") as handle:
            for number, text in enumerate(handle, start=1):
                if not text.endswith(b"\n"):
                    continue  # a line still being written
                read += len(text)
                if number <= done:
                    continue  # already loaded
                try:
                    record = json.loads(text)
                except ValueError:  # not JSON, or not UTF-8
                    log.warning("%s line %d is not JSON; skipped", path.name, number)
                    result.lines_skipped += 1
                    continue
                if not isinstance(record, dict):
                    log.warning("%s line %d is not a JSON object; skipped", path.name, number)
                    result.lines_skipped += 1
                    continue
                rows.append(
                    {
                        "file": path.name,
                        "line": number,
                        "ts": record.get("ts"),
                        "request_id": record.get("request_id"),
                        "endpoint": record.get("endpoint"),
                        "task": record.get("task"),
                        "model_version": record.get("model_version"),
                        "latency_ms": record.get("latency_ms"),
                        "inputs": json.dumps(record.get("inputs") or {}, ensure_ascii=False),
                        "risk_score": record.get("risk_score"),
                        "risk_label": None if record.get("risk_label") is None else str(record.get("risk_label")),
                        "student_hash": record.get("student_hash"),
                        "error": record.get("error"),
                    }
                )
        result.read_bytes[path.name] = read
    if rows:
        frame = pd.DataFrame(rows, columns=list(COLUMNS))
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True, errors="coerce").dt.tz_localize(None)
        replace_rows(con, "predictions", frame)
    result.rows_loaded = len(rows)
    return result


def prediction_inputs(con: duckdb.DuckDBPyConnection, task: str, *, days: int | None = None) -> pd.DataFrame:
    """The inputs and scores of logged predictions of ``task`` (the last ``days`` days, or all)."""
    query = "select ts, model_version, inputs, risk_score from predictions where task = ? and error is null"
    params: list[object] = [task]
    if days is not None:
        query += " and ts >= now()::timestamp - to_days(?)"
        params.append(days)
    frame = con.execute(query + " order by ts", params).df()
    inputs = pd.DataFrame([json.loads(x) for x in frame["inputs"]], index=frame.index) if len(frame) else pd.DataFrame()
    return pd.concat([frame.drop(columns=["inputs"]), inputs], axis=1)
