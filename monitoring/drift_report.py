"""One drift run's report logic: what is compared, whether it is new, the report written, the verdict.

The flow (``flows/drift.py``) says the order and the retries; the judging itself is
:func:`monitoring.drift.check`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from modeling.registry import Registry
from modeling.release import fit_years
from monitoring.drift import RETRAIN, SEVERITY, DriftCheck
from monitoring.evidently_adapter import write_report
from monitoring.report_page import card_link, render_page
from passos.errors import PassosError
from passos.settings import Settings


@dataclass
class DriftFrames:
    """What one task's drift run compares, and the outcomes of earlier warnings."""

    reference: pd.DataFrame
    year: pd.DataFrame
    log: pd.DataFrame
    latest: int
    reference_years: str
    log_rows_total: int
    outcomes: pd.DataFrame
    labelled_years: list[int]


def rows_sha(frame: pd.DataFrame) -> str:
    """A fingerprint of the rows, whatever order the view returned them in."""
    keys = [column for column in ("ra", "year") if column in frame.columns]
    ordered = frame.sort_values(keys) if keys else frame
    hashed = pd.util.hash_pandas_object(ordered.sort_index(axis=1), index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def is_new(fingerprint: dict[str, Any], previous: dict[str, Any] | None, min_log_rows: int) -> bool:
    """Whether a comparison has something new since the previous check of the same task and kind."""
    if previous is None or previous.get("model_version") != fingerprint["model_version"]:
        return True
    if fingerprint["comparison"] == "log":
        return int(fingerprint["log_rows_total"]) - int(previous.get("log_rows_total") or 0) >= min_log_rows
    return previous.get("rows_sha") != fingerprint["rows_sha"]


def fit_years_by_version(registry: Registry, task_name: str, versions: list[str]) -> dict[str, list[int]]:
    """The years each version was fitted on, for the versions still in the registry."""
    found = {}
    for version in versions:
        try:
            found[version] = fit_years(registry.metadata(task_name, version))
        except (PassosError, OSError, ValueError):
            continue  # a version no longer in the registry: its figures are marked "unknown"
    return found


MIN_LOG_ROWS_TO_COMPARE = 30  # fewer rows than this cannot say anything about a distribution


def comparisons(
    frames: DriftFrames, years: list[int], window_days: int | None
) -> list[tuple[str, str, pd.DataFrame, bool]]:
    """What one task's run compares with the champion's data: the year, and the log when it has enough rows.

    Each is ``(key, label, rows, in_sample)``; a year the champion was fitted on is in-sample.
    """
    found = [("year", f"year {frames.latest}", frames.year, frames.latest in years)]
    if len(frames.log) >= MIN_LOG_ROWS_TO_COMPARE:
        window = f", last {window_days} days" if window_days else ""
        found.append(("log", f"prediction log{window}", frames.log, False))
    return found


def fingerprint(key: str, version: str, label: str, current: pd.DataFrame, log_rows_total: int) -> dict[str, Any]:
    """What makes a comparison the same as an earlier one: champion, rows, and the log's size."""
    return {
        "comparison": key,
        "model_version": version,
        "current": label,
        "rows": len(current),
        "rows_sha": rows_sha(current),
        "log_rows_total": log_rows_total,
    }


def champion_recall(metadata: dict[str, Any]) -> float | None:
    """The champion's out-of-time recall, as its training run recorded it."""
    recall = ((metadata.get("metrics") or {}).get("test") or {}).get("recall")
    return None if recall is None else float(recall)


def run_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The run's result: one short row per report."""
    keys = ("run_id", "task", "current", "score_psi", "weighted_psi", "verdict", "reasons")
    return [{k: r[k] for k in keys} for r in rows]


def retrain_tasks(rows: list[dict[str, Any]]) -> list[str]:
    """The tasks for which a report recommends retraining."""
    return sorted({r["task"] for r in rows if r["verdict"] == RETRAIN})


def retrain_reasons(rows: list[dict[str, Any]]) -> str:
    """The first reason of each report that recommends retraining."""
    return "; ".join(f"{r['task']} ({r['current']}): {r['reasons'][0]}" for r in rows if r["verdict"] == RETRAIN)


def worst_verdict(rows: list[dict[str, Any]]) -> str | None:
    """The most severe verdict of the run's reports (None without one)."""
    return max((r["verdict"] for r in rows), key=lambda v: SEVERITY.get(v, 0), default=None)


def write_drift_report(
    settings: Settings,
    registry: Registry,
    name: str,
    version: str,
    label: str,
    frames: DriftFrames,
    current: pd.DataFrame,
    outcome: DriftCheck,
    outcomes: list[dict[str, Any]],
    fingerprint: dict[str, Any],
) -> dict[str, Any]:
    """Write one report (page and JSON) and return its ``drift_reports`` row."""
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{name}-{fingerprint['comparison']}-{uuid.uuid4().hex[:6]}"
    directory = settings.reports_dir / "drift" / run_id
    created = datetime.now(UTC)
    card = registry.path(name, version) / "card.md"
    meta = {
        "run_id": run_id,
        "created_at": created.isoformat(),
        "task": name,
        "verdict": outcome.verdict,
        "reasons": outcome.reasons,
        "score_psi": outcome.score_psi,
        "weighted_psi": outcome.weighted_psi,
        "model_version": version,
        "reference": f"years {frames.reference_years} (the champion's training data)",
        "current": label,
        "card_path": card.relative_to(settings.home).as_posix(),  # a served page names no path of the machine
        "card_link": card_link(name, version),
        "check": outcome.as_dict(),
        "outcomes": outcomes,
        "fingerprint": fingerprint,
        "legend": {
            "psi": "0 = identical; higher = more drift (below 0.1 no real shift, 0.1-0.2 moderate, >= 0.2 significant)",
            "check.signals[].threshold": "calibrated: a signal above it (and >= 0.1) is an alarm",
            "summary.column_scores": "Evidently's: p-values (K-S, chi-square; lower = more drift) or distances "
            "(Wasserstein, Jensen-Shannon; higher = more drift); see summary.column_tests. Detail only.",
        },
    }
    result = outcome.result
    page = render_page(meta, None if result is None else result.html)
    if result is not None:
        result.html = page
        write_report(result, directory, meta=meta)
    else:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "report.html").write_text(page, encoding="utf-8")
        (directory / "report.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    performance = outcome.performance or {}
    row = {
        "run_id": run_id,
        "created_at": created.replace(tzinfo=None),
        "task": name,
        "model_version": version,
        "reference": f"years {frames.reference_years}",
        "current": label,
        "reference_rows": len(frames.reference),
        "current_rows": len(current),
        "share_drifted": None if result is None else result.share_drifted,
        "drifted_columns": json.dumps(outcome.moved),
        "score_psi": outcome.score_psi,
        "recall": performance.get("recall"),
        "precision": performance.get("precision"),
        "roc_auc": None,
        "verdict": outcome.verdict,
        "reasons": json.dumps(outcome.reasons),
        "report_path": str(directory / "report.html"),
    }
    return row


def verdict_row(row: dict[str, Any], outcome: DriftCheck) -> dict[str, Any]:
    """A report's row as the run's result shows it: the reasons as a list, with the weighted PSI."""
    return row | {"weighted_psi": outcome.weighted_psi, "reasons": outcome.reasons}


def verdicts_markdown(rows: list[dict[str, Any]], skipped: list[str]) -> str:
    lines = ["| task | checked | verdict | score PSI | weighted PSI | reasons |", "|---|---|---|---|---|---|"]
    for r in rows:
        psi = "n/a" if r["score_psi"] is None else f"{r['score_psi']:.3f}"
        weighted = "n/a" if r["weighted_psi"] is None else f"{r['weighted_psi']:.3f}"
        verdict = f"**{r['verdict']}**" if r["verdict"] == RETRAIN else r["verdict"]
        reasons = "; ".join(r["reasons"]).replace("|", "/")
        lines.append(f"| {r['task']} | {r['current']} | {verdict} | {psi} | {weighted} | {reasons} |")
    if skipped:
        lines.append("")
        lines.append("Skipped, nothing new: " + "; ".join(skipped))
    if not rows and not skipped:
        lines.append("| — | — | no champion | | | |")
    return "\n".join(lines)
