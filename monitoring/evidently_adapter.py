"""The one place that imports Evidently (pinned at 0.7.23; its API changed at 0.4, 0.6 and 0.7).

:func:`run_drift` compares a reference frame with a current one: data drift per feature with
``DataDriftPreset`` and, when the current frame has labels and predictions, binary
classification quality with ``ClassificationPreset``. The two Evidently reports are merged
into one snapshot, so there is one self-contained HTML page (Evidently embeds its JavaScript
and icon font in ``get_html_str(as_iframe=False)``: the page opens offline) and one JSON.

Drift decisions are Evidently's own: a column drifted when its per-column drift test failed.
Evidently picks the test from the data (for example K-S p-value for numeric columns up to
1000 reference rows, Wasserstein distance above), so the test and its threshold are reported
beside each score. Columns that are entirely empty on one side cannot be tested by Evidently;
they are reported here as *missing drift* and count as drifted.
"""

from __future__ import annotations

import html as html_lib
import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from evidently import BinaryClassification, DataDefinition, Dataset, Report
from evidently import __version__ as EVIDENTLY_VERSION
from evidently.core.report import Snapshot
from evidently.metrics import RocAuc
from evidently.presets import ClassificationPreset, DataDriftPreset

from passos.settings import get_settings

logger = logging.getLogger(__name__)

_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
# Evidently metric type -> our performance key (values are those of the current data).
_PERFORMANCE_METRICS = {
    "evidently:metric_v2:Recall": "recall",
    "evidently:metric_v2:Precision": "precision",
    "evidently:metric_v2:F1Score": "f1",
    "evidently:metric_v2:RocAuc": "roc_auc",
    "evidently:metric_v2:Accuracy": "accuracy",
}
_RESERVED_KEYS = frozenset({"summary", "evidently"})


@dataclass
class DriftResult:
    """What one drift run found.

    Attributes:
        share_drifted: Drifted feature columns (including missing drift) over all feature columns.
        drifted_columns: Feature columns whose drift test failed, then those empty on one side only.
        column_scores: Evidently's drift score per tested column (a p-value or a distance:
            see ``column_tests``).
        missing_share_reference: Share of missing values per feature column in the reference.
        missing_share_current: Share of missing values per feature column in the current data.
        performance: ``recall``, ``precision``, ``f1``, ``accuracy`` and (with probabilities and
            both classes present) ``roc_auc`` on the labelled current rows; None without labels
            or predictions.
        html: The self-contained HTML report.
        as_json: JSON-serialisable ``{"summary": ..., "evidently": ...}``.
        column_tests: The drift test Evidently used per tested column, e.g. ``"K-S p_value"``.
        column_thresholds: The threshold of that test per tested column.
        missing_drift_columns: Columns entirely empty in exactly one of the two frames.
    """

    share_drifted: float
    drifted_columns: list[str]
    column_scores: dict[str, float]
    missing_share_reference: dict[str, float]
    missing_share_current: dict[str, float]
    performance: dict[str, float] | None
    html: str
    as_json: dict[str, Any]
    column_tests: dict[str, str] = field(default_factory=dict)
    column_thresholds: dict[str, float] = field(default_factory=dict)
    missing_drift_columns: list[str] = field(default_factory=list)


def _json_safe(value: Any) -> Any:
    """Replace NaN and infinities (not JSON) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def _check_columns(frame: pd.DataFrame, columns: Sequence[str], side: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"the {side} frame has no column(s) {missing}")
    if frame.empty:
        raise ValueError(f"the {side} frame has no rows")


def _prepare(frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str], side: str) -> pd.DataFrame:
    """The feature columns with numeric ones as float and categorical ones as text (or None)."""
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for column in numeric:
        try:
            out[column] = frame[column].to_numpy(dtype="float64", na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"column {column!r} of the {side} frame is not numeric: {exc}") from exc
    for column in categorical:
        values = frame[column].astype(object).to_numpy()
        out[column] = [None if pd.isna(value) else str(value) for value in values]
    return out


def _missing_shares(frame: pd.DataFrame) -> dict[str, float]:
    return {column: float(frame[column].isna().mean()) for column in frame.columns}


def _drift_snapshot(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    drift_share: float,
) -> Snapshot:
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    report = Report([DataDriftPreset(columns=numeric + categorical, drift_share=drift_share)], include_tests=True)
    return report.run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )


def _labelled_rows(
    current: pd.DataFrame, target: str | None, prediction: str | None, prediction_proba: str | None
) -> pd.DataFrame | None:
    """The current rows with a label and every given prediction, as 0/1 ints and float probas."""
    if target is None or target not in current.columns:
        return None
    predictions = [column for column in (prediction, prediction_proba) if column and column in current.columns]
    if not predictions:
        return None
    rows = current[[target, *predictions]].dropna()
    if rows.empty:
        return None
    out = pd.DataFrame(index=pd.RangeIndex(len(rows)))
    for column in (target, prediction):
        if column is None or column not in rows.columns:
            continue
        values = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=float)
        if not np.isin(values, (0.0, 1.0)).all():
            seen = rows[column].drop_duplicates().head(5).tolist()
            raise ValueError(f"column {column!r} must hold binary labels 0/1, got values such as {seen}")
        out[column] = values.astype(int)
    if prediction_proba is not None and prediction_proba in rows.columns:
        out[prediction_proba] = rows[prediction_proba].to_numpy(dtype="float64")
    return out


def _classification_definition(target: str, labels: str | None, probas: str | None) -> DataDefinition:
    return DataDefinition(
        numerical_columns=[probas] if probas else [],
        categorical_columns=[target] + ([labels] if labels else []),
        classification=[
            BinaryClassification(target=target, prediction_labels=labels, prediction_probas=probas, pos_label=1)
        ],
    )


def _classification_snapshots(
    labelled: pd.DataFrame, target: str, prediction: str | None, prediction_proba: str | None
) -> list[Snapshot]:
    """Quality on the labelled current rows (the reference performance is training's business).

    Given both labels and probabilities, Evidently 0.7.23 derives the label metrics from the
    probabilities cut at 0.5 and ignores the labels; the model's own threshold is elsewhere, so
    the label metrics come from a labels-only run and ROC AUC from a probabilities-only one.
    """
    labels = prediction if prediction in labelled.columns else None
    probas = prediction_proba if prediction_proba in labelled.columns else None
    if probas is not None and labelled[target].nunique() < 2:
        # ROC AUC is undefined with one class, and Evidently 0.7.23 fails on it (KeyError '0').
        logger.warning("only one class in %r: ROC AUC is not computed", target)
        if labels is None:
            labels = "_predicted_label"
            labelled = labelled.assign(**{labels: (labelled[probas] >= 0.5).astype(int)})
        probas = None
    snapshots: list[Snapshot] = []
    if labels is not None:
        snapshots.append(
            Report([ClassificationPreset()], include_tests=True).run(
                Dataset.from_pandas(labelled, data_definition=_classification_definition(target, labels, None)),
                None,
            )
        )
    if probas is not None:
        metrics: list[Any] = [RocAuc()] if labels is not None else [ClassificationPreset()]
        snapshots.append(
            Report(metrics, include_tests=True).run(
                Dataset.from_pandas(labelled, data_definition=_classification_definition(target, None, probas)),
                None,
            )
        )
    return snapshots


def _merge(snapshots: list[Snapshot]) -> Snapshot:
    """One snapshot holding the metrics, widgets and tests of several (public dump/load API)."""
    if len(snapshots) == 1:
        return snapshots[0]
    merged = snapshots[0].dump_dict()
    for other in snapshots[1:]:
        extra = other.dump_dict()
        merged["metric_results"].update(extra["metric_results"])
        merged["top_level_metrics"] += extra["top_level_metrics"]
        merged["widgets"] += extra["widgets"]
        merged["tests_widgets"] += extra["tests_widgets"]
    return Snapshot.load_dict(merged)


def _column_drift(
    evidently_dict: Mapping[str, Any],
) -> tuple[dict[str, float], dict[str, str], dict[str, float], list[str]]:
    scores: dict[str, float] = {}
    tests: dict[str, str] = {}
    thresholds: dict[str, float] = {}
    for metric in evidently_dict["metrics"]:
        config = metric.get("config", {})
        if config.get("type") != _VALUE_DRIFT:
            continue
        column = config["column"]
        scores[column] = float(metric["value"])
        tests[column] = str(config.get("method"))
        thresholds[column] = float(config["threshold"])
    drifted = [
        test["metric_config"]["params"]["column"]
        for test in evidently_dict["tests"]
        if test["metric_config"]["params"].get("type") == _VALUE_DRIFT and test["status"] == "FAIL"
    ]
    return scores, tests, thresholds, drifted


def _performance(evidently_dict: Mapping[str, Any]) -> dict[str, float]:
    values: dict[str, float] = {}
    for metric in evidently_dict["metrics"]:
        key = _PERFORMANCE_METRICS.get(metric.get("config", {}).get("type", ""))
        if key is not None and isinstance(metric["value"], int | float) and math.isfinite(metric["value"]):
            values[key] = float(metric["value"])
    return values


def _with_missing_note(page: str, missing: Mapping[str, str]) -> str:
    """Put a visible note on the columns Evidently could not test at the top of the page."""
    if not missing:
        return page
    items = "".join(
        f"<li><b>{html_lib.escape(column)}</b>: {html_lib.escape(why)}</li>" for column, why in missing.items()
    )
    note = (
        '<div style="font-family:sans-serif;margin:1em;padding:.5em 1em;border:2px solid #c62828">'
        f"<p><b>Missing drift</b>: columns entirely empty on one side (not tested, counted as drifted)</p>"
        f"<ul>{items}</ul></div>"
    )
    head, marker, tail = page.partition("<body>")
    return f"{head}{marker}{note}{tail}" if marker else note + page


def run_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: list[str],
    categorical: list[str],
    target: str | None = None,
    prediction: str | None = None,
    prediction_proba: str | None = None,
    drift_share: float | None = None,
) -> DriftResult:
    """Compare ``current`` with ``reference``: drift per feature and, with labels, performance.

    Args:
        reference: The data the model was trained or validated on.
        current: The data to check.
        numeric: Numeric feature columns (must be in both frames).
        categorical: Categorical feature columns (must be in both frames).
        target: The 0/1 label column; performance needs it in ``current``.
        prediction: The 0/1 predicted-label column in ``current``.
        prediction_proba: The predicted probability of class 1 in ``current``; without
            ``prediction`` Evidently cuts it at 0.5 for the label metrics.
        drift_share: Share of drifted columns at which Evidently's dataset-level test in the
            HTML fails; defaults to the ``drift_share_threshold`` setting.

    Returns:
        The :class:`DriftResult`. Performance is computed on the current rows that have a label
        and every given prediction; it is None when there are none.

    Raises:
        ValueError: No feature columns, a column listed twice or absent from a frame, an empty
            frame, a non-numeric value in a numeric column, or labels that are not 0/1.
    """
    features = [*numeric, *categorical]
    if not features:
        raise ValueError("run_drift needs at least one numeric or categorical column")
    if len(set(features)) != len(features):
        raise ValueError(f"a column is listed twice in numeric/categorical: {features}")
    _check_columns(reference, features, "reference")
    _check_columns(current, features, "current")
    ref = _prepare(reference, numeric, categorical, "reference")
    cur = _prepare(current, numeric, categorical, "current")
    missing_ref = _missing_shares(ref)
    missing_cur = _missing_shares(cur)

    missing_drift: dict[str, str] = {}
    for column in features:
        if missing_ref[column] == 1.0 and missing_cur[column] < 1.0:
            missing_drift[column] = "all-null in the reference"
        elif missing_cur[column] == 1.0 and missing_ref[column] < 1.0:
            missing_drift[column] = "all-null in the current data"
    testable = {c for c in features if missing_ref[c] < 1.0 and missing_cur[c] < 1.0}
    num_ok = [c for c in numeric if c in testable]
    cat_ok = [c for c in categorical if c in testable]

    dataset_share = get_settings().drift_share_threshold if drift_share is None else drift_share
    snapshots: list[Snapshot] = []
    if testable:
        snapshots.append(_drift_snapshot(ref, cur, num_ok, cat_ok, dataset_share))
    labelled = _labelled_rows(current, target, prediction, prediction_proba)
    if labelled is not None and target is not None:
        snapshots.extend(_classification_snapshots(labelled, target, prediction, prediction_proba))
    if snapshots:
        snapshot = _merge(snapshots)
        evidently_dict = _json_safe(json.loads(snapshot.json()))
        page = snapshot.get_html_str(as_iframe=False)
    else:
        evidently_dict = {"metrics": [], "tests": []}
        page = "<!DOCTYPE html><html><head><meta charset='utf-8'></head><body></body></html>"

    scores, tests, thresholds, drifted_tested = _column_drift(evidently_dict)
    drifted = [c for c in features if c in set(drifted_tested)] + list(missing_drift)
    performance = _performance(evidently_dict) if labelled is not None else None
    share_drifted = len(drifted) / len(features)
    summary = {
        "share_drifted": share_drifted,
        "drifted_columns": drifted,
        "missing_drift_columns": list(missing_drift),
        "column_scores": scores,
        "column_tests": tests,
        "column_thresholds": thresholds,
        "missing_share_reference": missing_ref,
        "missing_share_current": missing_cur,
        "performance": performance,
        "n_reference": len(reference),
        "n_current": len(current),
        "n_labelled": 0 if labelled is None else len(labelled),
        "evidently_version": EVIDENTLY_VERSION,
    }
    logger.info(
        "drift: %d of %d columns drifted (%s); performance %s",
        len(drifted),
        len(features),
        ", ".join(drifted) or "none",
        performance,
    )
    return DriftResult(
        share_drifted=share_drifted,
        drifted_columns=drifted,
        column_scores=scores,
        missing_share_reference=missing_ref,
        missing_share_current=missing_cur,
        performance=performance,
        html=_with_missing_note(page, missing_drift),
        as_json=_json_safe({"summary": summary, "evidently": evidently_dict}),
        column_tests=tests,
        column_thresholds=thresholds,
        missing_drift_columns=list(missing_drift),
    )


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a report."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(result: DriftResult, directory: Path, *, meta: Mapping[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.json`` into ``directory`` (created if needed).

    Args:
        result: What :func:`run_drift` returned.
        directory: Usually ``<reports_dir>/drift/<run id>``.
        meta: Extra top-level keys of ``report.json`` (``run_id``, ``created_at``, ``task``,
            ``verdict``, ``score_psi``: what :func:`monitoring.report_index.scan_entries` reads).
            Dates are written in ISO 8601.

    Returns:
        The paths of the HTML and the JSON file.

    Raises:
        ValueError: ``meta`` uses a reserved key (``summary``, ``evidently``).
    """
    extra = dict(meta or {})
    clash = _RESERVED_KEYS & extra.keys()
    if clash:
        raise ValueError(f"meta may not use the reserved key(s) {sorted(clash)}")
    directory.mkdir(parents=True, exist_ok=True)
    html_path = directory / "report.html"
    json_path = directory / "report.json"
    document = _json_safe({**extra, **result.as_json})
    text = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False, default=_json_default)
    _write_atomic(html_path, result.html)
    _write_atomic(json_path, text)
    logger.info("drift report written to %s", directory)
    return html_path, json_path


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"report.json: {type(value).__name__} is not JSON-serialisable: {value!r}")
