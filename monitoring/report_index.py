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

# The three levels, "no new data since training", and "ok" of reports written before the levels.
VERDICTS = ("stable", "watch", "retrain recommended", "no new data since training", "ok")
_CLASSES = {
    "retrain recommended": "retrain",
    "watch": "watch",
    "stable": "ok",
    "ok": "ok",
    "no new data since training": "nothing",
}


@dataclass(frozen=True)
class ReportEntry:
    """One drift report as the index lists it.

    Attributes:
        run_id: The run's id; the report is at ``drift/<run_id>/report.html``.
        created_at: When the run was made (naive times are taken as UTC).
        task: The model task the report is about, e.g. ``current`` or ``next_year``.
        verdict: One of :data:`VERDICTS`.
        share_drifted: Share of feature columns Evidently's tests flag, 0 to 1 (None when nothing
            was compared).
        score_psi: PSI of the model's scores, reference against current; None if not computed.
        weighted_psi: Importance-weighted feature PSI; None if not computed.
        current: What was checked, e.g. ``year 2025``.
        reasons: The verdict's reasons in words.
    """

    run_id: str
    created_at: datetime
    task: str
    verdict: str
    share_drifted: float | None
    score_psi: float | None = None
    weighted_psi: float | None = None
    current: str = ""
    reasons: tuple[str, ...] = ()

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
th, td { padding: .35em .8em; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.retrain { color: #b71c1c; font-weight: bold; }
.watch { color: #e65100; font-weight: bold; }
.ok { color: #1b5e20; }
.nothing { color: #455a64; }
.note { color: #555; max-width: 60em; }
"""
_DOT = {"retrain": "#b71c1c", "watch": "#e65100", "ok": "#1b5e20", "nothing": "#90a4ae"}


def _row(entry: ReportEntry) -> str:
    share = "—" if entry.share_drifted is None else f"{_fmt(entry.share_drifted * 100, 1)}%"
    return (
        "<tr>"
        f'<td><a href="{escape(entry.link)}">{escape(entry.run_id)}</a></td>'
        f"<td>{escape(_utc(entry.created_at).isoformat(timespec='seconds'))}</td>"
        f"<td>{escape(entry.task)}</td>"
        f"<td>{escape(entry.current)}</td>"
        f'<td class="{_CLASSES[entry.verdict]}">{escape(entry.verdict)}</td>'
        f'<td class="num">{_fmt(entry.score_psi, 3)}</td>'
        f'<td class="num">{_fmt(entry.weighted_psi, 3)}</td>'
        f'<td class="num">{share}</td>'
        "</tr>"
    )


def _latest(entries: list[ReportEntry]) -> str:
    """The newest verdict per task and checked data, with its reasons: what the page opens with."""
    seen: dict[tuple[str, str], ReportEntry] = {}
    for entry in _newest_first(entries):
        seen.setdefault((entry.task, entry.current.split(",")[0].split(" ")[0]), entry)
    blocks = []
    for (task, _), entry in sorted(seen.items()):
        reasons = "".join(f"<li>{escape(reason)}</li>" for reason in entry.reasons)
        blocks.append(
            f'<h3><span class="{_CLASSES[entry.verdict]}">{escape(entry.verdict)}</span> — {escape(task)}, '
            f"{escape(entry.current)} "
            f'<small>(<a href="{escape(entry.link)}">report</a>, '
            f"{escape(_utc(entry.created_at).isoformat(timespec='minutes'))})</small></h3><ul>{reasons}</ul>"
        )
    return "<h2>Latest verdicts</h2>" + "".join(blocks)


def _trend(entries: list[ReportEntry]) -> str:
    """Score PSI across runs per task, oldest to newest, as inline SVG (dots coloured by verdict)."""
    parts = []
    for task in sorted({entry.task for entry in entries}):
        runs = [e for e in reversed(_newest_first(entries)) if e.task == task and e.score_psi is not None]
        if not runs:
            continue
        width, height, top = max(120, 24 * len(runs)), 80, max(0.3, *(float(e.score_psi or 0) for e in runs))
        points = []
        dots = []
        for i, entry in enumerate(runs):
            x = 12 + i * (width - 24) / max(len(runs) - 1, 1)
            y = height - 8 - (height - 16) * float(entry.score_psi or 0.0) / top
            points.append(f"{x:.1f},{y:.1f}")
            dots.append(
                f'<a href="{escape(entry.link)}"><circle cx="{x:.1f}" cy="{y:.1f}" r="4" '
                f'fill="{_DOT[_CLASSES[entry.verdict]]}"><title>{escape(entry.run_id)}: {escape(entry.verdict)}, '
                f"score PSI {_fmt(entry.score_psi, 3)}</title></circle></a>"
            )
        guide = height - 8 - (height - 16) * 0.1 / top
        parts.append(
            f"<h3>{escape(task)}</h3>"
            f'<svg width="{width}" height="{height}" role="img" aria-label="score PSI of {escape(task)} across runs">'
            f'<line x1="0" x2="{width}" y1="{guide:.1f}" y2="{guide:.1f}" stroke="#ccc" stroke-dasharray="4"/>'
            f'<polyline fill="none" stroke="#555" points="{" ".join(points)}"/>{"".join(dots)}</svg>'
        )
    if not parts:
        return ""
    return (
        "<h2>Trend: the champion's score PSI per run</h2>"
        '<p class="note">Oldest on the left; the dashed line is PSI 0.1. Dots: red retrain recommended, '
        "orange watch, green stable. Runs that compared nothing (no new data) are left out.</p>" + "".join(parts)
    )


_LEGEND = (
    '<p class="note"><b>Verdicts</b>: <span class="retrain">retrain recommended</span> (a signal the model '
    'relies on moved beyond what years with nothing new reach, or realised recall fell), <span class="watch">'
    "watch</span> (a smaller move, or one in a feature the model barely uses: look again next time), "
    '<span class="ok">stable</span>, <span class="nothing">no new data since training</span> (the champion was '
    "fitted on these rows: nothing to compare). <b>PSI</b>: 0 identical, below 0.1 no real shift, 0.1 to 0.2 "
    "moderate, 0.2 and above significant; the thresholds that decide are calibrated per signal (see a report). "
    "<b>Share drifted</b>: Evidently's per-column tests, shown for detail only.</p>"
)


def render_index(entries: list[ReportEntry]) -> str:
    """The index page for ``entries``: the latest verdict per task first, the legend, the trend, every run.

    Args:
        entries: The reports to list, in any order.

    Returns:
        A self-contained HTML document, every text escaped.
    """
    rows = "\n".join(_row(entry) for entry in _newest_first(entries))
    body = (
        f"{_latest(entries)}{_LEGEND}{_trend(entries)}<h2>Every run</h2>"
        "<table>\n<thead><tr><th>run</th><th>created (UTC)</th><th>task</th><th>checked</th><th>verdict</th>"
        "<th>score PSI</th><th>weighted PSI</th><th>share drifted</th></tr></thead>\n<tbody>\n"
        f"{rows}\n</tbody>\n</table>"
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
    weighted = document.get("weighted_psi")
    summary = document.get("summary")
    if summary is None and "check" not in document:
        raise KeyError("summary")  # neither an Evidently summary nor a check: not a report
    share = None if summary is None else summary["share_drifted"]
    return ReportEntry(
        run_id=run_id,
        created_at=datetime.fromisoformat(str(document["created_at"])),
        task=str(document["task"]),
        verdict=str(document["verdict"]),
        share_drifted=None if share is None else float(share),
        score_psi=None if psi is None else float(psi),
        weighted_psi=None if weighted is None else float(weighted),
        current=str(document.get("current") or ""),
        reasons=tuple(str(reason) for reason in document.get("reasons") or ()),
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


def prune(reports_dir: Path, *, retention_days: int, keep: int, now: datetime | None = None) -> list[str]:
    """Delete the reports older than ``retention_days``, except the newest ``keep`` of each task.

    Only folders listed by :func:`scan_entries` are touched (a folder without a readable
    ``report.json`` is left for a person to look at).

    Args:
        reports_dir: The reports root.
        retention_days: Age in days beyond which a report is deleted.
        keep: The newest reports per task that are kept whatever their age.
        now: The current time (default: now, UTC).

    Returns:
        The run ids deleted.
    """
    import shutil
    from datetime import timedelta

    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    kept_per_task: dict[str, int] = {}
    removed = []
    for entry in scan_entries(reports_dir):  # newest first
        kept_per_task[entry.task] = kept_per_task.get(entry.task, 0) + 1
        if kept_per_task[entry.task] <= keep or _utc(entry.created_at) >= cutoff:
            continue
        shutil.rmtree(reports_dir / "drift" / entry.run_id, ignore_errors=True)
        removed.append(entry.run_id)
    if removed:
        logger.info("pruned %d drift reports older than %d days", len(removed), retention_days)
    return removed


def last_fingerprints(reports_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The ``fingerprint`` of the newest report per (task, comparison), to tell whether anything is new.

    Args:
        reports_dir: The reports root.

    Returns:
        ``{(task, comparison): fingerprint}`` from ``report.json`` files that have one.
    """
    found: dict[tuple[str, str], tuple[datetime, dict[str, Any]]] = {}
    for json_path in (reports_dir / "drift").glob("*/report.json"):
        try:
            document = json.loads(json_path.read_text(encoding="utf-8"))
            fingerprint = document.get("fingerprint")
            if not isinstance(fingerprint, dict):
                continue
            created = _utc(datetime.fromisoformat(str(document["created_at"])))
            key = (str(document["task"]), str(fingerprint.get("comparison")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("skipping %s: %s: %s", json_path, type(exc).__name__, exc)
            continue
        if key not in found or created > found[key][0]:
            found[key] = (created, fingerprint | {"run_id": json_path.parent.name})
    return {key: value for key, (_, value) in found.items()}
