"""The one DuckDB connection factory, with retries while another process holds the file."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

from passos.errors import WarehouseBusyError
from passos.file_modes import make_folders, restrict_file
from passos.settings import Settings, get_settings
from warehouse.descriptions import apply_comments

log = logging.getLogger(__name__)
SQL_DIR = Path(__file__).resolve().parent / "sql"
SCHEMA_FILES = (
    "schema",
    "feature_base",
    "features_current",
    "features_next_year",
    "outcomes",
    "risk_reasons",
    "at_risk",
    "call_list",
)


def sql(name: str) -> str:
    """The text of ``warehouse/sql/<name>.sql``."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def _is_lock_error(error: duckdb.Error) -> bool:
    text = str(error).lower()
    return "lock" in text or "conflicting" in text or "already open" in text


@contextmanager
def connect(
    settings: Settings | None = None, *, read_only: bool = False, path: Path | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse (creating it and its schema when writable), closing it afterwards.

    Retries ``warehouse_lock_retries`` times, ``warehouse_lock_wait_s`` apart (doubling), while
    another process holds the file, then raises :class:`WarehouseBusyError` naming the file.
    """
    settings = settings or get_settings()
    target = path or settings.warehouse_path
    if read_only and not target.exists():
        raise FileNotFoundError(f"no warehouse at {target}: run `passos ingest` first")
    new = not target.exists()
    if not read_only:
        make_folders(target.parent)
    wait = settings.warehouse_lock_wait_s
    for attempt in range(settings.warehouse_lock_retries + 1):
        try:
            con = duckdb.connect(str(target), read_only=read_only)
            break
        except duckdb.IOException as error:
            if not _is_lock_error(error):
                raise
            if attempt == settings.warehouse_lock_retries:
                raise WarehouseBusyError(
                    f"warehouse {target} is locked by another process after {attempt + 1} attempts: {error}"
                ) from error
            log.warning("warehouse %s is busy (attempt %d), retrying in %.1fs", target, attempt + 1, wait)
            time.sleep(wait)
            wait *= 2
    try:
        if not read_only:
            restrict_file(target, new=new)  # before any record is written
            for name in SCHEMA_FILES:
                con.execute(sql(name))
            if not con.execute(
                "select 1 from duckdb_tables() where database_name = current_database() and table_name = 'features'"
            ).fetchall():
                con.execute(sql("features"))  # materialised once here; rebuilt by warehouse/analytics.py
            # `create or replace view` drops a view's comments: put them back every time.
            apply_comments(con)
        yield con
    finally:
        con.close()


ANALYST_MEMORY_LIMIT = "4GB"  # per `passos sql` query; DuckDB's default is 80 % of the machine's RAM
ANALYST_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "access_mode": "read_only",
    "enable_external_access": False,  # no read_text, COPY ... TO, ATTACH, EXPORT, INSTALL or LOAD
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    # A query larger than memory fails instead of spilling into `<analytics.duckdb>.tmp`, which
    # would otherwise grow to 90 % of the free disk that holds the warehouse, models and logs.
    "max_temp_directory_size": "0B",
    "memory_limit": ANALYST_MEMORY_LIMIT,
    "lock_configuration": True,  # last: no SET / RESET / PRAGMA can undo the lines above
}


def connect_analyst(path: Path) -> duckdb.DuckDBPyConnection:
    """Open the analysts' database for queries only: no file, network or database beyond ``path``.

    The configuration is set when the database is opened and locked, so a query cannot turn
    external access back on (``SET``, ``RESET`` and ``PRAGMA`` of any setting are refused).
    What a query can still do, and what it cannot: docs/warehouse.md, "What an analyst's query
    can reach".

    Raises:
        FileNotFoundError: there is no file at ``path``.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no analysts' database at {path}")
    return duckdb.connect(str(path), config=dict(ANALYST_CONFIG))


def replace_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    frame: pd.DataFrame,
    *,
    delete_where: str | None = None,
    params: Sequence[object] = (),
) -> int:
    """In one transaction: optionally delete ``where``, then insert ``frame`` by column name.

    A reader never sees the table half-replaced, and a failure leaves it as it was.
    """
    con.execute("begin transaction")
    try:
        if delete_where is not None:
            con.execute(f"delete from {table} where {delete_where}", list(params))
        if len(frame):
            con.register("incoming_rows", frame)
            con.execute(f"insert into {table} by name select * from incoming_rows")
            con.unregister("incoming_rows")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return len(frame)
