"""When a drift check is worth running: a new champion, new rows, or enough new predictions."""

from __future__ import annotations

import pandas as pd

from monitoring.drift_report import is_new, rows_sha


def fingerprint(**extra: object) -> dict[str, object]:
    return {"comparison": "year", "model_version": "v1", "rows_sha": "a", "log_rows_total": 0} | extra


def test_a_year_is_new_when_its_rows_or_the_champion_change() -> None:
    assert is_new(fingerprint(), None, 200)  # never checked
    assert not is_new(fingerprint(), fingerprint(), 200)
    assert is_new(fingerprint(rows_sha="b"), fingerprint(), 200)
    assert is_new(fingerprint(model_version="v2"), fingerprint(), 200)


def test_the_log_is_new_after_enough_new_predictions() -> None:
    log = fingerprint(comparison="log", log_rows_total=1_000)
    assert not is_new(log | {"log_rows_total": 1_199}, log, 200)
    assert is_new(log | {"log_rows_total": 1_200}, log, 200)


def test_the_rows_fingerprint_ignores_row_and_column_order() -> None:
    frame = pd.DataFrame({"ra": ["RA-2", "RA-1"], "year": [2024, 2024], "ida": [5.0, 6.0]})
    shuffled = frame.iloc[::-1][["ida", "year", "ra"]]
    assert rows_sha(frame) == rows_sha(shuffled)
    assert rows_sha(frame) != rows_sha(frame.assign(ida=[5.0, 6.5]))
