"""The prediction log: real files in tmp_path, written by the real background thread."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from passos.settings import Settings
from serving.prediction_log import FILE_PATTERN, PredictionLog, hash_student_id, log_files, read_records


def a_record(i: int, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "request_id": f"req-{i:05d}",
        "endpoint": "predict",
        "task": "current",
        "model_version": "current-20250101T000000",
        "latency_ms": 3.25,
        "inputs": {"IDA": 4.5, "IEG": 7.0, "Fase": 3, "Gênero": "Feminino"},
        "risk_score": 0.5 + i / 1_000_000,
        "risk_label": i % 2,
        "student_hash": hash_student_id(f"RA-{i}", "salt"),
    }
    record.update(extra)
    return record


def test_hash_student_id_is_stable_salted_and_short() -> None:
    first = hash_student_id("RA-123", "salt-a")
    assert first == hash_student_id(" RA-123 ", "salt-a")
    assert first != hash_student_id("RA-123", "salt-b")
    assert first != hash_student_id("RA-124", "salt-a")
    # Pinned: hashes join predictions across releases, so the scheme must not drift.
    assert first == "f6fa27cad5917233"


def test_every_record_is_read_back_once_in_order_across_rotated_files(tmp_path: Path) -> None:
    directory = tmp_path / "predictions"
    with PredictionLog(directory, rotate_bytes=2048) as log:
        for i in range(500):
            log.append(a_record(i))
        assert log.flush(timeout=5)
        assert log.written == 500

    files = log_files(directory)
    assert len(files) > 10
    assert all(FILE_PATTERN.match(path.name) for path in files)
    assert all(path.stat().st_size <= 2048 for path in files)
    records = list(read_records(directory))
    assert [record["request_id"] for record in records] == [f"req-{i:05d}" for i in range(500)]
    assert records[7]["inputs"] == a_record(7)["inputs"]
    assert records[7]["risk_score"] == a_record(7)["risk_score"]
    assert log.dropped == 0


def test_a_record_is_stamped_with_utc_time_unless_it_has_one(tmp_path: Path) -> None:
    with PredictionLog(tmp_path, rotate_bytes=10_000) as log:
        log.append(a_record(0))
        log.append(a_record(1, ts="2025-01-01T00:00:00+00:00"))
    first, second = read_records(tmp_path)
    assert first["ts"].endswith("+00:00")
    assert abs(time.time() - _epoch(first["ts"])) < 60
    assert second["ts"] == "2025-01-01T00:00:00+00:00"


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def test_names_and_raw_ids_never_reach_the_log(tmp_path: Path) -> None:
    inputs = {
        "IDA": 5.0,
        "NOME": "Aluno Fulano",
        "Nome Anonimizado": "Aluno-0042",
        "name": "Fulano",
        "RA": "RA-90210",
        "student_id": "RA-90211",
    }
    record = a_record(0, inputs=inputs, student_id="RA-90212", nome="Beltrana")
    with PredictionLog(tmp_path, rotate_bytes=10_000) as log:
        log.append(record)
    (saved,) = read_records(tmp_path)
    assert saved["inputs"] == {"IDA": 5.0}
    assert "student_id" not in saved
    assert "nome" not in saved
    raw = b"".join(path.read_bytes() for path in log_files(tmp_path))
    for secret in ("Fulano", "Aluno-0042", "RA-90210", "RA-90211", "RA-90212", "Beltrana"):
        assert secret.encode() not in raw
    assert inputs["NOME"] == "Aluno Fulano"  # the caller's dict is left alone


def test_missing_values_and_numpy_scalars_are_written_as_plain_json(tmp_path: Path) -> None:
    inputs = {
        "IDA": float("nan"),
        "IEG": np.float32(7.5),
        "Fase": np.int64(3),
        "INDE": float("inf"),
        "ok": np.bool_(True),
        "when": np.datetime64("2025-01-01"),
    }
    with PredictionLog(tmp_path, rotate_bytes=10_000) as log:
        log.append(a_record(0, inputs=inputs, risk_score=np.float64(0.25)))
    raw = log_files(tmp_path)[0].read_text(encoding="utf-8")
    assert "NaN" not in raw
    assert "Infinity" not in raw
    (saved,) = read_records(tmp_path)
    assert saved["inputs"]["IDA"] is None
    assert saved["inputs"]["INDE"] is None
    assert saved["inputs"]["IEG"] == 7.5
    assert saved["inputs"]["Fase"] == 3
    assert saved["inputs"]["ok"] is True
    assert saved["inputs"]["when"].startswith("2025-01-01")
    assert saved["risk_score"] == 0.25


def test_a_directory_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(OSError, match=str(blocker / "predictions")):
        PredictionLog(blocker / "predictions", rotate_bytes=10_000)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_is_a_permission_error(tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    directory.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match=str(directory)):
            PredictionLog(directory, rotate_bytes=10_000)
    finally:
        directory.chmod(0o700)


def test_no_file_and_no_directory_exist_before_the_log_is_built(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", predictions_rotate_bytes=4096)
    assert not settings.predictions_dir.exists()
    with PredictionLog.from_settings(settings) as log:
        assert log.directory == settings.predictions_dir
        assert settings.predictions_dir.is_dir()
        assert log_files(settings.predictions_dir) == []  # files are opened on the first record
        log.append(a_record(0))
    assert len(list(read_records(settings.predictions_dir))) == 1


def test_append_never_raises(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, rotate_bytes=10_000)
    log.append(None)  # type: ignore[arg-type]
    log.append(42)  # type: ignore[arg-type]
    log.append(a_record(0, inputs={"odd": object(), "nested": {"a": [1, (2, 3)]}}))
    assert log.flush(timeout=5)
    log.close()
    log.close()
    log.append(a_record(1))
    assert not log.flush(timeout=0.1)
    assert (log.written, log.dropped) == (1, 3)
    (saved,) = read_records(tmp_path)
    assert saved["inputs"]["nested"] == {"a": [1, [2, 3]]}
    assert saved["inputs"]["odd"].startswith("<object")


def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    with PredictionLog(tmp_path, rotate_bytes=1_000_000, queue_size=1) as log:
        for i in range(5000):
            log.append(a_record(i))
    assert log.dropped > 0
    assert log.written + log.dropped == 5000
    assert len(list(read_records(tmp_path))) == log.written


def test_writes_recover_after_the_directory_comes_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "predictions"
    with PredictionLog(directory, rotate_bytes=10_000) as log:
        shutil.rmtree(directory)
        directory.write_text("a file where the folder was")
        with caplog.at_level(logging.ERROR, logger="serving.prediction_log"):
            log.append(a_record(0))
            log.append(a_record(1))
            assert log.flush(timeout=5)
        assert log.dropped == 2
        assert [r.message for r in caplog.records if str(directory) in r.message]  # logged once
        assert len([r for r in caplog.records if "cannot write" in r.message]) == 1
        directory.unlink()
        log.append(a_record(2))
        assert log.flush(timeout=5)
    assert [record["request_id"] for record in read_records(directory)] == ["req-00002"]


def test_two_logs_in_one_directory_never_share_a_file(tmp_path: Path) -> None:
    with PredictionLog(tmp_path, rotate_bytes=10_000) as first, PredictionLog(tmp_path, rotate_bytes=10_000) as second:
        for i in range(50):
            first.append(a_record(i, endpoint="a"))
            second.append(a_record(i, endpoint="b"))
    records = list(read_records(tmp_path))
    assert len(records) == 100
    for path in log_files(tmp_path):
        endpoints = {json.loads(line)["endpoint"] for line in path.read_text(encoding="utf-8").splitlines()}
        assert len(endpoints) == 1


def test_read_records_skips_a_torn_line_and_ignores_other_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert list(read_records(tmp_path / "missing")) == []
    good = json.dumps(a_record(1))
    (tmp_path / "predictions-20250101T000000-1-000001.jsonl").write_text(
        good + "\n\n[1, 2]\n" + good[:20], encoding="utf-8"
    )
    (tmp_path / "predictions-20250101T000000-1-000002.jsonl").write_text(
        json.dumps(a_record(2)) + "\n", encoding="utf-8"
    )
    (tmp_path / "notes.jsonl").write_text(json.dumps(a_record(3)) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="serving.prediction_log"):
        records = list(read_records(tmp_path))
    assert [record["request_id"] for record in records] == ["req-00001", "req-00002"]
    assert len(caplog.records) == 2


def test_files_sort_by_time_then_process_then_sequence(tmp_path: Path) -> None:
    names = [
        "predictions-20250102T000000-7-000001.jsonl",
        "predictions-20250101T000000-12-000001.jsonl",
        "predictions-20250101T000000-7-000010.jsonl",
        "predictions-20250101T000000-7-000002.jsonl",
    ]
    for name in names:
        (tmp_path / name).write_text("", encoding="utf-8")
    assert [path.name for path in log_files(tmp_path)] == [
        "predictions-20250101T000000-7-000002.jsonl",
        "predictions-20250101T000000-7-000010.jsonl",
        "predictions-20250101T000000-12-000001.jsonl",
        "predictions-20250102T000000-7-000001.jsonl",
    ]


def test_a_burst_of_appends_is_all_accounted_for(tmp_path: Path) -> None:
    record = a_record(0)
    with PredictionLog(tmp_path, rotate_bytes=1_000_000) as log:
        for _ in range(10_000):
            log.append(record)
    assert log.written + log.dropped == 10_000


def test_rotate_bytes_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rotate_bytes"):
        PredictionLog(tmp_path, rotate_bytes=0)
