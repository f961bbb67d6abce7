"""Retention of the prediction log: real files written by the real writer, a real DuckDB warehouse."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest

from passos.settings import Settings
from serving.prediction_log import PredictionLog, log_files
from serving.prediction_retention import (
    SEAL_GRACE_S,
    apply_retention,
    enforce_bound,
    folder_bytes,
    is_sealed,
    opened_at,
)
from warehouse.connection import connect
from warehouse.predictions import load_prediction_log

HOUR = 3600.0
NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def a_record(i: int) -> dict[str, object]:
    return {
        "request_id": f"req-{i:05d}",
        "endpoint": "predict",
        "task": "current",
        "model_version": "current-v1",
        "latency_ms": 1.5,
        "inputs": {"iaa": 7.0, "fase": 3},
        "risk_score": 0.25,
        "risk_label": "low",
    }


def stamp(at: float) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(at))


def write_log(folder: Path, records: int, *, rotate_bytes: int = 2_000) -> list[Path]:
    """Files written by the real writer (closed), oldest first."""
    with PredictionLog(folder, rotate_bytes=rotate_bytes) as log:
        for i in range(records):
            log.append(a_record(i))
        assert log.flush()
    return log_files(folder)


def age(path: Path, opened: float, *, pid: int | None = None) -> Path:
    """Rename a real log file as if its writer had opened it at ``opened``, last writing it then."""
    _, _, old_pid, seq = path.stem.split("-")
    target = path.with_name(f"predictions-{stamp(opened)}-{pid or old_pid}-{seq}.jsonl")
    path.rename(target)
    os.utime(target, (opened, opened))
    return target


def test_opened_at_reads_the_utc_second_in_the_name() -> None:
    assert opened_at(Path(f"predictions-{stamp(NOW)}-12-000001.jsonl")) == NOW
    with pytest.raises(ValueError, match="not a prediction log file name"):
        opened_at(Path("notes.jsonl"))


def test_a_file_is_sealed_only_past_its_rotation_deadline_and_last_write(tmp_path: Path) -> None:
    path = age(write_log(tmp_path, 3)[0], NOW - HOUR)
    assert not is_sealed(path, rotate_seconds=HOUR, now=NOW)  # its writer may still append
    assert not is_sealed(path, rotate_seconds=HOUR, now=NOW + SEAL_GRACE_S - 1)
    assert is_sealed(path, rotate_seconds=HOUR, now=NOW + SEAL_GRACE_S + 1)
    os.utime(path, (NOW + 600, NOW + 600))  # written after its deadline (a clock off): wait for that too
    assert not is_sealed(path, rotate_seconds=HOUR, now=NOW + SEAL_GRACE_S + 1)


def test_the_writer_opens_a_new_file_once_the_current_one_is_old(tmp_path: Path) -> None:
    with PredictionLog(tmp_path, rotate_bytes=1_000_000, rotate_seconds=0.3) as log:
        log.append(a_record(1))
        assert log.flush()
        log.append(a_record(2))
        assert log.flush()
        time.sleep(0.4)
        log.append(a_record(3))
        assert log.flush()
    files = log_files(tmp_path)
    assert [len(path.read_text().splitlines()) for path in files] == [2, 1]


def test_loaded_sealed_files_are_deleted_and_every_other_file_kept(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "log"
    files = write_log(folder, 40)
    assert len(files) >= 4
    old = [age(path, NOW - 3 * HOUR) for path in files[:-2]]
    appended = age(files[-2], NOW - 3 * HOUR, pid=999_998)
    recent = age(files[-1], NOW - 600)  # its writer may still append for another 50 minutes
    with connect(settings) as con:
        loaded = load_prediction_log(con, folder)
        rows = con.execute("select count(*) from predictions").fetchall()[0][0]
    with appended.open("a") as handle:  # a line the load did not read: that file must stay
        handle.write(json.dumps(a_record(99)) + "\n")
    os.utime(appended, (NOW - 3 * HOUR, NOW - 3 * HOUR))

    result = apply_retention(folder, loaded.read_bytes, rotate_seconds=HOUR, max_bytes=10**9, now=NOW)

    assert rows == 40
    assert sorted(result.pruned) == sorted(path.name for path in old)
    assert result.pruned_bytes > 0 and result.evicted == []
    assert sorted(log_files(folder)) == sorted([appended, recent])
    assert (result.kept, result.kept_bytes) == (2, folder_bytes(folder))
    with connect(settings) as con:  # the warehouse is the archive: every row is still there
        assert con.execute("select count(*) from predictions").fetchall()[0][0] == 40
        assert load_prediction_log(con, folder).rows_loaded == 1  # only the appended line


def test_a_sealed_file_with_an_unfinished_last_line_is_deleted_once_loaded(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "log"
    path = write_log(folder, 3)[0]
    with path.open("a") as handle:
        handle.write('{"request_id": "cut sh')  # a writer killed mid-line
    path = age(path, NOW - 3 * HOUR)
    with connect(settings) as con:
        loaded = load_prediction_log(con, folder)
    assert loaded.rows_loaded == 3
    with caplog.at_level(logging.WARNING, logger="serving.prediction_retention"):
        result = apply_retention(folder, loaded.read_bytes, rotate_seconds=HOUR, max_bytes=10**9, now=NOW)
    assert result.pruned == [path.name] and not path.exists()
    assert "unfinished line" in caplog.text


def test_over_the_bound_the_oldest_unloaded_files_go_and_each_is_logged_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = [age(path, NOW - HOUR * (10 - i)) for i, path in enumerate(write_log(tmp_path, 60))]
    sizes = [path.stat().st_size for path in files]
    bound = sum(sizes[-3:])  # room for the newest three
    with caplog.at_level(logging.ERROR, logger="serving.prediction_retention"):
        result = apply_retention(tmp_path, {}, rotate_seconds=HOUR, max_bytes=bound, now=NOW)

    assert result.pruned == []
    assert result.evicted == [path.name for path in files[:-3]]
    assert log_files(tmp_path) == files[-3:]
    assert folder_bytes(tmp_path) <= bound
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == len(files) - 3
    assert files[0].name in errors[0].getMessage()
    assert "lost" in errors[0].getMessage() and "PASSOS_PREDICTIONS_MAX_BYTES" in errors[0].getMessage()


def test_under_the_bound_no_unloaded_file_is_touched(tmp_path: Path) -> None:
    files = [age(path, NOW - 3 * HOUR) for path in write_log(tmp_path, 30)]
    result = apply_retention(tmp_path, {}, rotate_seconds=HOUR, max_bytes=folder_bytes(tmp_path), now=NOW)
    assert (result.pruned, result.evicted) == ([], [])
    assert log_files(tmp_path) == files


def test_the_writer_holds_the_folder_under_its_bound_and_never_deletes_its_open_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bound = 6_000
    with (
        caplog.at_level(logging.ERROR, logger="serving.prediction_retention"),
        PredictionLog(tmp_path, rotate_bytes=2_000, max_bytes=bound) as log,
    ):
        for i in range(200):
            log.append(a_record(i))
            if i % 20 == 0:
                assert log.flush()
                # the bound is checked as a file is opened: at most one file's growth past it
                assert folder_bytes(tmp_path) <= bound + 2_000
        assert log.flush()
        assert log.written == 200
    files = log_files(tmp_path)
    assert folder_bytes(tmp_path) <= bound + 2_000
    assert json.loads(files[-1].read_text().splitlines()[-1])["request_id"] == "req-00199"
    assert "before the warehouse loaded it" in caplog.text


def test_enforce_bound_keeps_what_it_is_told_to(tmp_path: Path) -> None:
    files = write_log(tmp_path, 40)
    result = enforce_bound(tmp_path, 0, keep={files[0]})
    assert log_files(tmp_path) == [files[0]]
    assert len(result.evicted) == len(files) - 1
    assert enforce_bound(tmp_path / "missing", 0).kept == 0


def test_settings_reach_the_writer(settings: Settings) -> None:
    log = PredictionLog.from_settings(settings)
    try:
        assert (log._rotate_seconds, log._max_bytes) == (3600, 1_000_000_000)
    finally:
        log.close()


def test_the_drift_flows_load_task_loads_then_deletes_what_it_loaded(settings: Settings) -> None:
    from flows.drift import load_log_task

    folder = settings.predictions_dir
    now = time.time()
    old = [age(path, now - 3 * HOUR) for path in write_log(folder, 30)]
    with PredictionLog(folder, rotate_bytes=1_000_000) as log:  # a writer still at work
        log.append(a_record(100))
        assert log.flush()
        current = [path for path in log_files(folder) if path not in old]
        assert load_log_task.fn(settings) == 31
        assert log_files(folder) == current
        log.append(a_record(101))
        assert log.flush()
    assert load_log_task.fn(settings) == 1
    with connect(settings) as con:
        assert con.execute("select count(distinct request_id) from predictions").fetchall()[0][0] == 32
