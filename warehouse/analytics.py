"""The analysts' database: a snapshot of the warehouse, swapped in by rename, that never blocks a flow.

DuckDB lets one process write a file, and a reader (even ``-readonly``) holds a lock that stops
every writer. So analysts never open ``warehouse.duckdb``: they open ``analytics.duckdb``, a
complete copy (same tables and views, the ``features`` table, the ``at_risk`` view, every
comment) that each flow that writes rebuilds in a new file and renames over the old one. The
rename never waits for a reader: a session that is open keeps reading the file it opened (the old
inode) until it closes; the next session opens the new one. Why this design: docs/warehouse.md.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from passos.file_modes import restrict_file
from passos.settings import Settings, get_settings
from warehouse.connection import SCHEMA_FILES, connect, sql
from warehouse.descriptions import apply_comments

log = logging.getLogger(__name__)

SNAPSHOT_ALIAS = "analytics_snapshot"


@dataclass(frozen=True)
class Refresh:
    """What one refresh published."""

    path: Path
    tables: dict[str, int]
    seconds: float


def _base_tables(con: duckdb.DuckDBPyConnection, catalog: str) -> list[str]:
    rows = con.execute(
        "select table_name from information_schema.tables "
        "where table_catalog = ? and table_schema = 'main' and table_type = 'BASE TABLE' order by table_name",
        [catalog],
    ).fetchall()
    return [r[0] for r in rows]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def materialise_features(con: duckdb.DuckDBPyConnection) -> int:
    """Rebuild the ``features`` table from ``feature_base`` (both tasks' inputs and targets)."""
    con.execute(sql("features"))
    return int(con.execute("select count(*) from features").fetchall()[0][0])


def build_snapshot(con: duckdb.DuckDBPyConnection, target: Path) -> dict[str, int]:
    """Write a complete copy of the open warehouse ``con`` into the new file ``target``.

    The copy is made by the schema files (tables with their keys, views, macros), then the rows of
    every table, then the comments: the same definitions as the warehouse, not a dump of it.
    """
    warehouse = con.execute("select current_database()").fetchall()[0][0]
    tables = _base_tables(con, warehouse)
    con.execute(f"attach '{target}' as {SNAPSHOT_ALIAS}")
    restrict_file(target, new=True)  # before any record is copied in
    counts: dict[str, int] = {}
    try:
        con.execute(f"use {SNAPSHOT_ALIAS}")
        try:
            for name in SCHEMA_FILES:
                con.execute(sql(name))
            existing = set(_base_tables(con, SNAPSHOT_ALIAS))
            for table in tables:
                source = f"{_ident(warehouse)}.main.{_ident(table)}"
                if table in existing:
                    con.execute(f"insert into main.{_ident(table)} by name select * from {source}")
                else:  # a table the schema files do not create (the materialised features)
                    con.execute(f"create table main.{_ident(table)} as select * from {source}")
                counts[table] = int(con.execute(f"select count(*) from main.{_ident(table)}").fetchall()[0][0])
            missing = apply_comments(con, catalog=SNAPSHOT_ALIAS)
            if missing:
                log.warning("analytics: no description for %s (warehouse/sql/descriptions.yaml)", ", ".join(missing))
        finally:
            con.execute(f"use {_ident(warehouse)}")
        con.execute(f"checkpoint {SNAPSHOT_ALIAS}")
    finally:
        con.execute(f"detach {SNAPSHOT_ALIAS}")
    return counts


def _remove_leftovers(target: Path) -> None:
    """Delete the staging files of refreshes that were killed before they could clean up."""
    for leftover in target.parent.glob(f".{target.stem}-*.tmp*"):
        leftover.unlink(missing_ok=True)
        log.info("analytics: removed %s, left by a refresh that was stopped", leftover.name)


def refresh_analytics(settings: Settings | None = None) -> Refresh:
    """Materialise ``features``, comment everything, and publish a new ``analytics.duckdb``.

    Opens the warehouse for writing (waiting for another writer like every flow does), builds the
    copy in a temporary file beside the target, then renames it into place: a reader of the old
    file is never waited for and never sees a half-written file.
    """
    settings = settings or get_settings()
    started = time.perf_counter()
    target = settings.analytics_path
    staging = target.with_name(f".{target.stem}-{secrets.token_hex(4)}.tmp")
    try:
        with connect(settings) as con:
            _remove_leftovers(target)  # under the warehouse's write lock: no other refresh is running
            materialise_features(con)
            apply_comments(con)
            counts = build_snapshot(con, staging)
        os.replace(staging, target)
    finally:
        for leftover in (staging, staging.with_name(staging.name + ".wal")):
            leftover.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    log.info("analytics: published %s (%d tables) in %.2f s", target, len(counts), seconds)
    return Refresh(path=target, tables=counts, seconds=seconds)
