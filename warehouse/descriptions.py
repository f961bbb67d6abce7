"""What every table, view and column means, from ``sql/descriptions.yaml`` and the feature contract.

One source for the ``COMMENT ON`` statements of both databases (:func:`apply_comments`) and for
anything else that describes a warehouse column (the API's response fields, docs): call
:func:`column_description`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb
import yaml

from features.featuresets import FEATURES

DESCRIPTIONS_FILE = Path(__file__).resolve().parent / "sql" / "descriptions.yaml"


@dataclass(frozen=True)
class Descriptions:
    """The parsed descriptions file, plus the model features' own descriptions."""

    tables: dict[str, str]
    columns: dict[str, str]
    table_columns: dict[str, dict[str, str]]
    features: dict[str, str]

    def table(self, name: str) -> str | None:
        """The description of a table or view, or None when there is none."""
        return self.tables.get(name)

    def column(self, table: str, column: str) -> str | None:
        """A column's description: its table's entry, else the shared entry, else the feature's."""
        return self.table_columns.get(table, {}).get(column) or self.columns.get(column) or self.features.get(column)


@lru_cache(maxsize=1)
def load_descriptions(path: Path = DESCRIPTIONS_FILE) -> Descriptions:
    """Read the descriptions file (cached)."""
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    features: dict[str, str] = {}
    for specs in FEATURES.values():
        for spec in specs:
            features.setdefault(spec.name, spec.description)
    return Descriptions(
        tables={str(k): str(v) for k, v in (data.get("tables") or {}).items()},
        columns={str(k): str(v) for k, v in (data.get("columns") or {}).items()},
        table_columns={
            str(t): {str(k): str(v) for k, v in (cols or {}).items()}
            for t, cols in (data.get("table_columns") or {}).items()
        },
        features=features,
    )


def column_description(table: str, column: str) -> str | None:
    """The description of ``table.column`` (None when the file and the features do not describe it)."""
    return load_descriptions().column(table, column)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def apply_comments(con: duckdb.DuckDBPyConnection, *, catalog: str | None = None) -> list[str]:
    """``COMMENT ON`` every table, view and column of ``catalog`` (default: the current database).

    Only comments that differ from the described text are written, in one transaction (each
    statement costs about 2 ms, and `create or replace view` drops a view's comments).

    Returns:
        ``table`` or ``table.column`` for every object left without a description (empty when
        all are described); they keep no comment rather than a made-up one.
    """
    descriptions = load_descriptions()
    catalog = catalog or con.execute("select current_database()").fetchall()[0][0]
    prefix = f"{_ident(catalog)}.main."
    objects = con.execute(
        "select table_name, 'table', comment from duckdb_tables() where database_name = ? and schema_name = 'main' "
        "union all select view_name, 'view', comment from duckdb_views() "
        "where database_name = ? and schema_name = 'main' and not internal order by 1",
        [catalog, catalog],
    ).fetchall()
    columns = con.execute(
        "select table_name, column_name, comment from duckdb_columns() "
        "where database_name = ? and schema_name = 'main' order by table_name, column_index",
        [catalog],
    ).fetchall()
    missing: list[str] = []
    statements: list[str] = []
    for table, kind, current in objects:
        text = descriptions.table(table)
        if text is None:
            missing.append(table)
        elif text != current:
            statements.append(f"comment on {kind} {prefix}{_ident(table)} is {_quote(text)}")
    for table, column, current in columns:
        text = descriptions.column(table, column)
        if text is None:
            missing.append(f"{table}.{column}")
        elif text != current:
            statements.append(f"comment on column {prefix}{_ident(table)}.{_ident(column)} is {_quote(text)}")
    if statements:
        con.execute("begin transaction")
        try:
            for statement in statements:
                con.execute(statement)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    return sorted(missing)
