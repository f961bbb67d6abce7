"""What the service keeps of a student: pseudonymous records, birth dates cut to the year, files only it reads."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import httpx
import pytest

from passos.settings import Settings
from serving.prediction_log import PredictionLog, coarsened, log_files, read_records
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.service import start_server

pytestmark = pytest.mark.integration
STUDENT = {"inde": 7.5, "iaa": 8.0, "ips": 6.5, "fase": 3, "idade": 13, "year": 2024, "data_nasc": "2011-06-17"}


@pytest.fixture(autouse=True)
def _sdk_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LANGFUSE_TRACING_ENABLED", "LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def test_birth_dates_reach_the_log_and_the_trace_as_a_year_only(model_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(model_home, home)
    with OtlpReceiver("ok") as receiver:
        settings = Settings(
            home=home,
            LANGFUSE_PUBLIC_KEY="pk-lf-test",
            LANGFUSE_SECRET_KEY="sk-lf-test",
            LANGFUSE_BASE_URL=receiver.base_url,
            LANGFUSE_TRACING_ENABLED=True,
            LANGFUSE_TIMEOUT=10,
        )
        server, thread, url = start_server(settings)
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                assert client.post("/predict", json=STUDENT | {"student_id": "RA-1"}).status_code == 200
                batch = {"task": "current", "students": [STUDENT, STUDENT | {"data_nasc": "2012-01-02", "year": 2025}]}
                assert client.post("/predict/batch", json=batch).status_code == 200
        finally:
            server.should_exit = True
            thread.join(timeout=15)
        receiver.wait_for_spans(2, timeout=30)
        traced = b"".join(receiver.bodies)
    records = list(read_records(home / "predictions"))
    assert [r["inputs"]["data_nasc"] for r in records] == [2011, 2011, 2012]
    assert b"2011-06-17" not in traced and b"2012-01-02" not in traced and b"RA-1" not in traced
    assert b"2011" in traced  # the year is kept
    for path in log_files(home / "predictions"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)


def test_the_log_cuts_birth_dates_whoever_writes_to_it(tmp_path: Path) -> None:
    with PredictionLog(tmp_path / "p", rotate_bytes=10_000) as log:
        log.append({"request_id": "r", "inputs": {"data_nasc": "2010-12-31", "ida": 5.0}})
    [record] = list(read_records(tmp_path / "p"))
    assert record["inputs"] == {"data_nasc": 2010, "ida": 5.0}
    assert coarsened({"data_nasc": "n/a"}) == {"data_nasc": "n/a"}  # not a date: left as sent (the schema refuses it)
