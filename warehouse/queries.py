"""The warehouse reads the flows need, each a named function over one ``warehouse/sql/<name>.sql`` file.

Values are bound parameters; the only text put into a query is a feature view's name, taken from
the known tasks, and, for ``COPY`` (which takes no parameters), integers and a path of ours.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from features.featuresets import TASKS
from warehouse.connection import sql


def features_table(task_name: str) -> str:
    """The feature view of a known task (``features_current``), or ``ValueError``."""
    if task_name not in TASKS:
        raise ValueError(f"unknown task {task_name!r}; expected one of {', '.join(TASKS)}")
    return f"features_{task_name}"


def latest_year(con: duckdb.DuckDBPyConnection) -> int | None:
    """The latest year with students in the warehouse, or ``None`` when it holds none."""
    year = con.execute(sql("latest_year")).fetchall()[0][0]
    return None if year is None else int(year)


def task_features(con: duckdb.DuckDBPyConnection, task_name: str) -> pd.DataFrame:
    """Every student-year of the task's feature view, by year then student."""
    return con.execute(sql("task_features").format(table=features_table(task_name))).df()


def task_features_of_year(con: duckdb.DuckDBPyConnection, task_name: str, year: int | None) -> pd.DataFrame:
    """One year of the task's feature view."""
    return con.execute(sql("task_features_of_year").format(table=features_table(task_name)), [year]).df()


def task_features_of_years(con: duckdb.DuckDBPyConnection, task_name: str, years: list[int]) -> pd.DataFrame:
    """The task's feature rows of the given years."""
    query = sql("task_features_of_years").format(table=features_table(task_name))
    return con.execute(query, [[int(year) for year in years]]).df()


def labelled_years(con: duckdb.DuckDBPyConnection, task_name: str) -> list[int]:
    """The years of the task whose target is known, in order."""
    rows = con.execute(sql("labelled_years").format(table=features_table(task_name))).fetchall()
    return sorted(int(row[0]) for row in rows)


def prediction_count(con: duckdb.DuckDBPyConnection, task_name: str) -> int:
    """How many logged predictions the warehouse holds for the task."""
    return int(con.execute(sql("prediction_count"), [task_name]).fetchall()[0][0])


def task_outcomes(con: duckdb.DuckDBPyConnection, task_name: str) -> pd.DataFrame:
    """The ``outcomes`` rows of the task's earlier warnings."""
    return con.execute(sql("task_outcomes"), [task_name]).df()


def export_task_year(
    con: duckdb.DuckDBPyConnection, task_name: str, year: int, target: Path, *, row_group_rows: int
) -> None:
    """Copy one year of the task's feature view, by student, to a Parquet file at ``target``."""
    query = sql("export_task_year").format(
        table=features_table(task_name),
        year=int(year),
        target=str(target).replace("'", "''"),
        row_group_rows=int(row_group_rows),
    )
    con.execute(query)
