"""The warehouse's copy of the registry, the table ``model_registry``: the pointer files are the truth.

Promotion switches a champion pointer (``champion.json``, atomically); copying that into the
warehouse can fail while another process holds the warehouse (DuckDB allows one writer per file)
or when the process is killed in between. So the copy is never the record: it is rebuilt from
the files by every registry write that reaches the warehouse (`passos train`, `passos models
promote`, `passos models rollback`) and by `passos models sync`, and :func:`stale_tasks` says
where it disagrees with the pointers.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from modeling.registry import Registry
from passos.settings import Settings
from warehouse.connection import connect, replace_rows


def stale_tasks(con: duckdb.DuckDBPyConnection, registry: Registry) -> list[str]:
    """The tasks whose champion or versions in ``model_registry`` differ from the registry's files."""
    files = {(s["task"], s["version"]): bool(s["is_champion"]) for s in registry.list_versions()}
    mirror = {
        (task, version): bool(champion)
        for task, version, champion in con.execute("select task, version, is_champion from model_registry").fetchall()
    }
    stale = {task for task, _version in files.keys() ^ mirror.keys()}  # a version only on one side
    stale |= {task for (task, version), champion in files.items() if mirror.get((task, version), champion) != champion}
    return sorted(stale)


def rebuild(con: duckdb.DuckDBPyConnection, registry: Registry) -> int:
    """Replace ``model_registry`` with the registry's rows, in one transaction; returns the row count."""
    return replace_rows(con, "model_registry", pd.DataFrame(registry.registry_rows()), delete_where="true")


def sync_mirror(settings: Settings, *, lock_retries: int | None = None) -> tuple[list[str], int]:
    """Open the warehouse for writing and rebuild ``model_registry`` from the registry's files.

    Args:
        settings: Where the warehouse and the registry are.
        lock_retries: Attempts while another process holds the warehouse (default: the setting).

    Returns:
        The tasks that were stale before the rebuild, and the number of rows now mirrored.

    Raises:
        WarehouseBusyError: The warehouse stayed locked; the pointers are unaffected.
    """
    if lock_retries is not None:
        settings = settings.model_copy(update={"warehouse_lock_retries": lock_retries})
    registry = Registry.from_settings(settings)
    with connect(settings) as con:
        stale = stale_tasks(con, registry)
        return stale, rebuild(con, registry)
