"""The flows' warehouse reads: named queries over .sql files, on a real warehouse in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from passos.settings import Settings
from warehouse import queries
from warehouse.connection import connect


def test_only_a_known_task_names_a_feature_view() -> None:
    assert queries.features_table("next_year") == "features_next_year"
    with pytest.raises(ValueError, match="unknown task 'students; drop table students'"):
        queries.features_table("students; drop table students")


def test_an_empty_warehouse_answers_with_nothing(settings: Settings) -> None:
    with connect(settings) as con:
        assert queries.latest_year(con) is None
        assert queries.task_features(con, "current").empty
        assert queries.task_features_of_years(con, "current", []).empty
        assert queries.labelled_years(con, "next_year") == []
        assert queries.prediction_count(con, "current") == 0
        assert queries.task_outcomes(con, "current").empty


def test_a_year_is_exported_to_a_path_with_a_quote(settings: Settings, tmp_path: Path) -> None:
    target = tmp_path / "o'neil" / "features.parquet"
    target.parent.mkdir()
    with connect(settings) as con:
        queries.export_task_year(con, "current", 2024, target, row_group_rows=100)
    table = pq.read_table(target)
    assert table.num_rows == 0 and {"ra", "year"} <= set(table.column_names)
