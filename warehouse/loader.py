"""Loading harmonised years into the warehouse: one source per year, atomic replacement, an audit trail.

Invariant, for every source: rows read = rows loaded + rows quarantined.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from features.columns import map_header
from features.harmonise import STUDENT_COLUMNS, Harmonised, harmonise
from passos.errors import SourceError
from passos.file_modes import make_folders, restrict_tree
from warehouse.sources import Discovery, YearTable, brief

log = logging.getLogger(__name__)


@dataclass
class Planned:
    """The table chosen for a year, and the other tables offering the same year."""

    table: YearTable
    also_offered_by: list[YearTable] = field(default_factory=list)


def plan(discovery: Discovery) -> list[Planned]:
    """One table per year. A CSV wins over a workbook sheet (it is the published export); among
    tables of the same kind, the first given wins. The others are recorded as skipped."""
    by_year: dict[int, list[YearTable]] = {}
    for table in discovery.tables:
        by_year.setdefault(table.year, []).append(table)
    planned = []
    for year in sorted(by_year):
        offered = sorted(by_year[year], key=lambda t: 0 if t.kind == "csv" else 1)
        planned.append(Planned(offered[0], offered[1:]))
    return planned


def validate_header(table: YearTable) -> None:
    """Raise :class:`SourceError` naming the missing columns when ``table`` is not a PEDE table."""
    from features.columns import column_map

    cmap = column_map()
    mapped = map_header(table.header, table.year, cmap)
    missing = [c for c in cmap.required if c not in mapped.sources]
    if missing:
        raw_names = {canon: raw for raw, canon in cmap.exact.items()}
        names = ", ".join(f"{c!r} (e.g. {raw_names.get(c, c)!r})" for c in missing)
        # the header is not quoted: a misplaced or symlinked file's content stays out of notes and logs
        raise SourceError(
            table.origin, f"not a PEDE table: missing column(s) {names} in a header of {len(table.header)}"
        )
    have = [c for c in cmap.indicators if c in mapped.sources]
    if absent := [c for c in cmap.indicators if c not in have]:
        log.warning("%s: indicator column(s) %s not in this file: left empty", table.origin, brief(absent))
    if len(have) < cmap.min_indicators:
        raise SourceError(
            table.origin,
            f"not a PEDE table: only {len(have)} of the indicator columns {cmap.indicators} "
            f"(need {cmap.min_indicators})",
        )


def _names(table: YearTable, names: list[str]) -> str:
    """Column names for a log line: a bounded list, and none from a symlinked file (its target could be anything)."""
    return "(names withheld: the source is a symbolic link)" if table.linked else brief(names)


def harmonise_table(table: YearTable) -> Harmonised:
    """Validate and harmonise one table (pure apart from logging)."""
    validate_header(table)
    mapped = map_header(table.header, table.year)
    if mapped.duplicates:
        log.info(
            "%s: repeated column(s) %s merged (first non-empty value wins)",
            table.origin,
            _names(table, mapped.duplicates),
        )
    if mapped.unknown:
        log.warning(
            "%s: %d unknown column(s) ignored %s", table.origin, len(mapped.unknown), _names(table, mapped.unknown)
        )
    return harmonise(table.rows, mapped, table.year, first_line=table.first_line, n_columns=len(table.header))


def formula_note(table: YearTable, shown: int = 8) -> str:
    """What a note says of a workbook's formula cells without a saved value ("" when it has none)."""
    if not table.unevaluated:
        return ""
    total = sum(table.unevaluated.values())
    if table.linked:
        where = f"in {len(table.unevaluated)} columns (names withheld: the source is a symbolic link)"
    else:
        counts = list(table.unevaluated.items())
        listed = ", ".join(f"{brief([name])[1:-1]} {n:,}" for name, n in counts[:shown])
        more = f" and {len(counts) - shown:,} more columns" if len(counts) > shown else ""
        where = f"by column: {listed}{more}"
    return (
        f"{total:,} formula cells without a saved value read as empty, {where}"
        " (open the workbook in a spreadsheet program and save it to store their values)"
    )


@dataclass
class LoadResult:
    """What happened to one source."""

    source: str
    year: int | None
    status: str  # loaded | unchanged | skipped | failed (a run's own row: running | interrupted | failed)
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    dq_issues: int = 0
    note: str = ""


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _record_run(con: duckdb.DuckDBPyConnection, run_id: str, sha: str, result: LoadResult, started: datetime) -> None:
    con.execute(
        "insert into ingest_runs values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run_id,
            result.source,
            sha,
            result.year,
            result.status,
            result.rows_read,
            result.rows_loaded,
            result.rows_quarantined,
            result.dq_issues,
            result.note,
            started,
            _now(),
        ],
    )


def record_failure(
    con: duckdb.DuckDBPyConnection, run_id: str, error: SourceError, year: int | None = None
) -> LoadResult:
    """Record a source that could not be read at all."""
    result = LoadResult(error.source, year, "failed", note=error.problem)
    _record_run(con, run_id, "", result, _now())
    return result


RUN_ROW = "(ingest run)"  # the source name of a run's own row in ingest_runs


def mark_stale_runs(con: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """Mark ``running`` rows as ``interrupted``: their process was killed (e.g. ``kill -9``).

    Called by a run that holds the warehouse for writing, so no other run can be in progress.
    """
    stale = con.execute("select count(*) from ingest_runs where status = 'running'").fetchall()[0][0]
    if stale:
        con.execute(
            "update ingest_runs set status = 'interrupted', finished_at = ?, "
            "note = 'stopped without finishing (process killed); found by run ' || ? where status = 'running'",
            [_now(), run_id],
        )
        log.warning("%d ingest run(s) were killed before finishing: marked interrupted in ingest_runs", stale)
    return int(stale)


@contextmanager
def tracked_run(con: duckdb.DuckDBPyConnection, run_id: str, description: str) -> Iterator[None]:
    """Record the run in ``ingest_runs`` (source ``(ingest run)``) while it lasts.

    The row says ``running`` until the run ends; then it is removed (each source has its own
    row) unless the run was stopped: Ctrl-C or SIGTERM make it ``interrupted``, an unexpected
    error ``failed``. A kill -9 leaves ``running``, which the next run marks ``interrupted``.
    """
    mark_stale_runs(con, run_id)
    started = _now()
    _record_run(con, run_id, "", LoadResult(RUN_ROW, None, "running", note=description), started)
    try:
        yield
    except BaseException as error:
        # KeyboardInterrupt, SystemExit and Prefect's TerminationSignal are not Exceptions
        status = "failed" if isinstance(error, Exception) else "interrupted"
        con.execute(
            "update ingest_runs set status = ?, note = ?, finished_at = ? "
            "where run_id = ? and source = ? and status = 'running'",
            [status, f"{status} by {type(error).__name__}; {description}", _now(), run_id, RUN_ROW],
        )
        raise
    con.execute("delete from ingest_runs where run_id = ? and source = ? and status = 'running'", [run_id, RUN_ROW])


def current_sha(con: duckdb.DuckDBPyConnection, year: int) -> str | None:
    """The sha256 of the source last loaded for ``year``, if any."""
    rows = con.execute(
        "select sha256 from ingest_runs where year = ? and status in ('loaded', 'unchanged') "
        "order by finished_at desc limit 1",
        [year],
    ).fetchall()
    return rows[0][0] if rows else None


def load_year(con: duckdb.DuckDBPyConnection, run_id: str, planned: Planned) -> list[LoadResult]:
    """Load the planned table of one year atomically (or do nothing when it is unchanged).

    The year's rows, quarantine and data-quality entries are replaced in one transaction, so a
    reader never sees half a year and a failure leaves the previous load in place.
    """
    table = planned.table
    started = _now()
    results: list[LoadResult] = []
    harmonised: Harmonised | None = None
    if current_sha(con, table.year) == table.sha256:
        result = LoadResult(table.origin, table.year, "unchanged", rows_read=len(table.rows), note="same sha256")
        n = con.execute("select count(*) from students where year = ?", [table.year]).fetchall()[0][0]
        q = con.execute("select count(*) from quarantine where year = ?", [table.year]).fetchall()[0][0]
        result.rows_loaded, result.rows_quarantined = n, q
        _record_run(con, run_id, table.sha256, result, started)
        results.append(result)
    else:
        harmonised = harmonise_table(table)
        frame = pd.DataFrame(harmonised.rows, columns=list(STUDENT_COLUMNS))
        frame["source"] = table.origin
        con.execute("begin transaction")
        try:
            con.execute("delete from students where year = ?", [table.year])
            con.execute("delete from quarantine where year = ?", [table.year])
            con.execute("delete from data_quality where year = ?", [table.year])
            con.register("incoming", frame)
            con.execute(f"insert into students ({', '.join([*STUDENT_COLUMNS, 'source'])}) select * from incoming")
            con.unregister("incoming")
            if harmonised.rejected:
                con.executemany(
                    "insert into quarantine values (?, ?, ?, ?, ?, ?)",
                    [[run_id, table.origin, table.year, r.line, r.reason, r.raw] for r in harmonised.rejected],
                )
            if harmonised.issues:
                con.executemany(
                    "insert into data_quality values (?, ?, ?, ?, ?, ?, ?)",
                    [[run_id, table.origin, table.year, i.line, i.column, i.raw, i.problem] for i in harmonised.issues],
                )
            result = LoadResult(
                table.origin,
                table.year,
                "loaded",
                rows_read=len(table.rows),
                rows_loaded=len(harmonised.rows),
                rows_quarantined=len(harmonised.rejected),
                dq_issues=len(harmonised.issues),
                note=formula_note(table),
            )
            if result.note:
                log.warning("%s: %s", table.origin, result.note)
            if result.rows_read != result.rows_loaded + result.rows_quarantined:  # pragma: no cover - invariant
                raise AssertionError(f"{table.origin}: rows in != loaded + quarantined")
            _record_run(con, run_id, table.sha256, result, started)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
        results.append(result)
    chosen_rows = (harmonised or harmonise_table(table)).rows if planned.also_offered_by else []
    for other in planned.also_offered_by:
        agreement = _agreement(chosen_rows, other)
        note = f"year {table.year} loaded from {table.origin} (CSV wins over workbook); {agreement}"
        skipped = LoadResult(other.origin, other.year, "skipped", rows_read=len(other.rows), note=note)
        _record_run(con, run_id, other.sha256, skipped, _now())
        results.append(skipped)
    return results


def _agreement(a: list[dict[str, Any]], other: YearTable) -> str:
    """Whether another source of the same year holds the same students and values as rows ``a``."""
    try:
        b = harmonise_table(other).rows
    except SourceError as error:
        return f"the other source is unreadable: {error.problem}"
    keyed = {r["ra"]: r for r in b}
    same = sum(1 for r in a if keyed.get(r["ra"]) == r)
    verdict = "agrees" if same == len(a) == len(b) else "DIFFERS"
    return f"{verdict}: {same} of {len(a)} rows identical ({len(b)} rows in {other.origin})"


def export_parquet(con: duckdb.DuckDBPyConnection, directory: Path) -> Path:
    """Export ``students`` to ``directory/students/year=YYYY/*.parquet``, swapping the folder atomically."""
    make_folders(directory)
    final = directory / "students"
    staging = directory / f".students-{uuid.uuid4().hex[:8]}"
    con.execute(f"copy (select * from students order by year, ra) to '{staging}' (format parquet, partition_by (year))")
    restrict_tree(staging)  # before it takes the published name
    old = directory / f".old-{uuid.uuid4().hex[:8]}"
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def summary(results: list[LoadResult]) -> list[dict[str, Any]]:
    """Plain dicts for printing and Prefect artifacts."""
    return [r.__dict__.copy() for r in results]


def ingest(con: duckdb.DuckDBPyConnection, run_id: str, discovery: Discovery) -> list[LoadResult]:
    """Load every year of ``discovery``. A bad table is recorded as failed and the others still
    load; when the chosen table of a year is bad, another source of that year is tried."""
    results: list[LoadResult] = []
    for error in discovery.errors:
        log.error("source rejected: %s", error)
        results.append(record_failure(con, run_id, error))
    for planned in plan(discovery):
        candidates = [planned.table, *planned.also_offered_by]
        for position, table in enumerate(candidates):
            try:
                results.extend(load_year(con, run_id, Planned(table, candidates[position + 1 :])))
                break
            except SourceError as error:
                log.error("source rejected: %s", error)
                results.append(record_failure(con, run_id, error, table.year))
    return results
