"""Loading the prediction log into the warehouse: idempotent, every row kept, partial lines waited for."""

from __future__ import annotations

import json
from pathlib import Path

from passos.settings import Settings
from serving.prediction_log import PredictionLog
from warehouse.connection import connect
from warehouse.predictions import load_prediction_log, prediction_inputs


def record(i: int, task: str = "current") -> dict[str, object]:
    return {
        "request_id": f"r{i}",
        "endpoint": "predict",
        "task": task,
        "model_version": "v1",
        "latency_ms": 0.5,
        "inputs": {"iaa": float(i % 10), "fase": 3, "genero": "F"},
        "risk_score": 0.3,
        "risk_label": "low",
    }


def test_loader_is_idempotent_and_keeps_every_row(settings: Settings) -> None:
    log = PredictionLog(settings.predictions_dir, rotate_bytes=2_000)
    for i in range(60):
        log.append(record(i, "current" if i % 3 else "next_year"))
    log.flush()
    files = list(settings.predictions_dir.glob("*.jsonl"))
    assert len(files) > 1  # rotated
    with connect(settings) as con:
        first = load_prediction_log(con, settings.predictions_dir)
        second = load_prediction_log(con, settings.predictions_dir)
        for i in range(60, 65):
            log.append(record(i))
        log.flush()
        third = load_prediction_log(con, settings.predictions_dir)
        rows = con.execute("select count(*), count(distinct request_id) from predictions").fetchall()
        frame = prediction_inputs(con, "current")
        recent = prediction_inputs(con, "current", days=1)
    log.close()
    assert (first.rows_loaded, second.rows_loaded, third.rows_loaded) == (60, 0, 5)
    assert rows == [(65, 65)]
    assert len(frame) == 45 and set(frame.columns) >= {"iaa", "fase", "genero", "risk_score"}
    assert len(recent) == 45


def test_broken_and_unfinished_lines(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "log"
    folder.mkdir()
    good = json.dumps(record(1))
    (folder / "predictions-20260101T000000-1-000001.jsonl").write_text(f"{good}\nnot json\n{good}\n[1, 2]\n{good[:10]}")
    with connect(settings) as con:
        result = load_prediction_log(con, folder)
        assert (result.rows_loaded, result.lines_skipped) == (2, 2)
        assert result.read_bytes == {"predictions-20260101T000000-1-000001.jsonl": 2 * len(good) + 18}
        (folder / "predictions-20260101T000000-1-000001.jsonl").write_text(
            f"{good}\nnot json\n{good}\n[1, 2]\n{good}\n"
        )
        assert load_prediction_log(con, folder).rows_loaded == 1
    assert load_prediction_log.__doc__


def test_missing_folder_loads_nothing(settings: Settings, tmp_path: Path) -> None:
    with connect(settings) as con:
        assert load_prediction_log(con, tmp_path / "none").rows_loaded == 0
