"""The index page of the drift reports: ``<reports_dir>/index.html``, newest first.

Each report lives in ``<reports_dir>/drift/<run id>/`` as ``report.html`` and ``report.json``;
:func:`scan_entries` rebuilds the index entries from those JSON files, so the page can always
be regenerated from disk.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

logger = logging.getLogger(__name__)

VERDICTS = ("ok", "retrain recommended")


@dataclass(frozen=True)
class ReportEntry:
    """One drift report as the index lists it.

    Attributes:
        run_id: The run's id; the report is at ``drift/<run_id>/report.html``.
        created_at: When the run was made (naive times are taken as UTC).
        task: The model task the report is about, e.g. ``current`` or ``next_year``.
        verdict: ``"ok"`` or ``"retrain recommended"``.
        share_drifted: Share of drifted feature columns, 0 to 1.
        score_psi: PSI of the model's scores, reference against current; None if not computed.
    """

    run_id: str
    created_at: datetime
    task: str
    verdict: str
    share_drifted: float
    score_psi: float | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r} (run {self.run_id!r})")
        if not self.run_id or "/" in self.run_id or self.run_id in {".", ".."}:
            raise ValueError(f"run_id must be a plain directory name, got {self.run_id!r}")

    @property
    def link(self) -> str:
        """The report's URL relative to the index page."""
        return f"drift/{quote(self.run_id, safe='')}/report.html"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _newest_first(entries: list[ReportEntry]) -> list[ReportEntry]:
    return sorted(entries, key=lambda entry: (_utc(entry.created_at), entry.run_id), reverse=True)


def _fmt(value: float | None, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.{digits}f}"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
th, td { padding: .35em .8em; border-bottom: 1px solid #ddd; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.retrain { color: #b71c1c; font-weight: bold; }
.ok { color: #1b5e20; }
"""


def _row(entry: ReportEntry) -> str:
    verdict_class = "ok" if entry.verdict == "ok" else "retrain"
    return (
        "<tr>"
        f'<td><a href="{escape(entry.link)}">{escape(entry.run_id)}</a></td>'
        f"<td>{escape(_utc(entry.created_at).isoformat(timespec='seconds'))}</td>"
        f"<td>{escape(entry.task)}</td>"
        f'<td class="{verdict_class}">{escape(entry.verdict)}</td>'
        f'<td class="num">{_fmt(entry.share_drifted * 100, 1)}%</td>'
        f'<td class="num">{_fmt(entry.score_psi, 3)}</td>'
        "</tr>"
    )


def render_index(entries: list[ReportEntry]) -> str:
    """The index page for ``entries``, newest first, every text escaped.

    Args:
        entries: The reports to list, in any order.

    Returns:
        A self-contained HTML document.
    """
    rows = "\n".join(_row(entry) for entry in _newest_first(entries))
    body = (
        "<table>\n<thead><tr><th>run</th><th>created (UTC)</th><th>task</th><th>verdict</th>"
        f"<th>share drifted</th><th>score PSI</th></tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>"
        if entries
        else "<p>No drift report yet.</p>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>Drift reports</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>\n<h1>Drift reports</h1>\n{body}\n</body>\n</html>\n"
    )


def write_index(reports_dir: Path, entries: list[ReportEntry]) -> Path:
    """Write ``reports_dir/index.html`` listing ``entries`` newest first.

    Args:
        reports_dir: The reports root (the settings' ``reports_dir``); created if needed.
        entries: The reports to list, e.g. from :func:`scan_entries`.

    Returns:
        The path of the index page.
    """
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / "index.html"
    # Written via a temporary file and a rename: the service may be serving the page meanwhile.
    fd, tmp = tempfile.mkstemp(dir=reports_dir, prefix=".index.html.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(render_index(entries))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("drift index written to %s (%d reports)", path, len(entries))
    return path


def _entry_from_json(run_dir: Path, document: dict[str, Any]) -> ReportEntry:
    run_id = run_dir.name
    if document.get("run_id") not in (None, run_id):
        # The directory decides: it is where the link points.
        logger.warning("%s: run_id %r differs from its directory", run_dir, document["run_id"])
    psi = document.get("score_psi")
    return ReportEntry(
        run_id=run_id,
        created_at=datetime.fromisoformat(str(document["created_at"])),
        task=str(document["task"]),
        verdict=str(document["verdict"]),
        share_drifted=float(document["summary"]["share_drifted"]),
        score_psi=None if psi is None else float(psi),
    )


def scan_entries(reports_dir: Path) -> list[ReportEntry]:
    """Rebuild the index entries from ``reports_dir/drift/*/report.json``.

    A file that cannot be read, or lacks ``created_at``, ``task``, ``verdict`` or
    ``summary.share_drifted``, is skipped with a warning: one broken report must not hide the
    others.

    Args:
        reports_dir: The reports root.

    Returns:
        The entries, newest first.
    """
    entries: list[ReportEntry] = []
    for json_path in sorted((reports_dir / "drift").glob("*/report.json")):
        try:
            document = json.loads(json_path.read_text(encoding="utf-8"))
            entries.append(_entry_from_json(json_path.parent, document))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("skipping %s: %s: %s", json_path, type(exc).__name__, exc)
    return _newest_first(entries)
