"""The end of ``passos run`` for a person: what was trained and its verdict, where to look, what to try next.

A pure function of the pipeline's result (the JSON that ``passos run --json`` prints) and the
settings, so it is tested without running the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from passos.settings import Settings

API = "http://127.0.0.1:8000"


def _fig(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "n/a"


def _train_line(row: Mapping[str, Any]) -> str:
    if row.get("accepted") and row.get("held"):
        verdict = "accepted, HELD FOR REVIEW (the champion is unchanged)"
    elif row.get("accepted"):
        verdict = "accepted, now the champion"
    else:
        verdict = "REJECTED (the champion is unchanged)"
    figures = (
        f"recall {_fig(row.get('test_recall'))}, precision {_fig(row.get('test_precision'))}, "
        f"ROC-AUC {_fig(row.get('test_roc_auc'))} out of time"
    )
    line = f"  {row.get('task', '?'):<10} {row.get('kind', '?')} {row.get('version', '?')}: {verdict}; {figures}"
    reasons = [str(r) for r in row.get("reasons") or []]
    return line + "".join(f"\n  {'':<10} - {reason}" for reason in reasons[:3])


def _ingest_line(rows: Sequence[Mapping[str, Any]]) -> str:
    loaded = [r for r in rows if r.get("status") == "loaded"]
    per_year = ", ".join(f"{r.get('year')}: {r.get('rows_loaded')} rows" for r in loaded)
    others: dict[str, int] = {}
    for row in rows:
        if row.get("status") != "loaded":
            others[str(row.get("status"))] = others.get(str(row.get("status")), 0) + 1
    rest = "; ".join(f"{n} {status}" for status, n in sorted(others.items()))
    quarantined = sum(int(r.get("rows_quarantined") or 0) for r in rows)
    plural = "" if len(loaded) == 1 else "s"
    text = f"  read       {len(loaded)} source{plural} loaded ({per_year or 'none'})"
    if rest:
        text += f'; {rest} (see `passos sql "select * from ingest_runs"`)'
    if quarantined:
        text += f"; {quarantined} rows quarantined"
    return text


def _drift_line(row: Mapping[str, Any]) -> str:
    reasons = row.get("reasons") or []
    more = f" ({len(reasons)} reason{'s' if len(reasons) != 1 else ''} in the report)" if reasons else ""
    return f"  {row.get('task', '?'):<10} drift on {row.get('current', '?')}: {row.get('verdict', '?')}{more}"


def call_lists(settings: Settings) -> list[Path]:
    """Call-list files the run wrote, newest first (none when this version writes none)."""
    found = [p for p in settings.home.rglob("call_list*") if p.is_file()] if settings.home.is_dir() else []
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def render_summary(result: Mapping[str, Any], settings: Settings, *, state: str = "Completed") -> str:
    """The human summary that ends ``passos run``.

    Args:
        result: The pipeline's result: ``ingest``, ``train``, ``score`` and ``drift`` lists.
        settings: Where the run wrote (``PASSOS_HOME``).
        state: The pipeline run's final state name (``Completed``, ``Rejected``, ...).
    """
    lines = [f"passos run: {state}", ""]
    lines.append("Data")
    lines.append(_ingest_line(result.get("ingest") or []))
    lines.append("")
    lines.append("Models (figures on the latest labelled year, never seen in training)")
    lines += [_train_line(row) for row in result.get("train") or []] or ["  nothing trained"]
    lines.append("")
    lines.append("Scores and drift")
    for row in result.get("score") or []:
        lines.append(
            f"  {row.get('task', '?'):<10} scored {row.get('scored')} students of {row.get('year')}: "
            f"{row.get('high_risk')} at high risk"
        )
    lines += [_drift_line(row) for row in result.get("drift") or []]
    lines.append("")
    lines.append("Where to look")
    reports = settings.reports_dir / "drift"
    lines.append(f"  drift reports   {reports}/ (and {API}/reports/ while the API runs)")
    lines.append(f"  model cards     {settings.models_dir}/<task>/<version>/card.md (`passos models show VERSION`)")
    lists = call_lists(settings)
    if lists:
        lines.append(f"  call list       {lists[0]}")
    lines.append('  at risk         passos sql "select * from at_risk" (every student flagged, with reasons)')
    lines.append(f"  API docs        {API}/docs once `passos serve` (or `make run`) is up")
    lines.append("")
    lines.append("Next")
    lines.append("  passos serve                      the prediction API on 127.0.0.1:8000")
    lines.append("  passos models list                every version, its gate verdict and figures")
    lines.append("  passos outcomes                   how earlier warnings turned out")
    lines.append("  make prefect; passos retrain      the schedules in the Prefect UI; a retrain on demand")
    lines.append("  passos run --json                 this run's full result as JSON")
    return "\n".join(lines)
