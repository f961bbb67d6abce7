"""The train flow: features → candidates → out-of-time evaluation → recall gate → registry."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed

from features.featuresets import TASKS, encode_frame, feature_names, feature_specs
from flows.refresh import refresh_analytics_task
from modeling.card import write_card
from modeling.evaluation import evaluate
from modeling.gate import Verdict, evaluate_gate
from modeling.registry import Registry
from modeling.training import TrainingResult, refit_on_all, split_out_of_time, train_candidates
from monitoring.drift import fit_years
from passos import __version__
from passos.errors import PassosError
from passos.settings import PROJECT_ROOT, Settings, get_settings
from warehouse.connection import connect, replace_rows


@task
def read_features(settings: Settings, task_name: str) -> pd.DataFrame:
    """The task's feature view, every student-year (the target is null where unknown)."""
    with connect(settings, read_only=True) as con:
        return con.execute(f"select * from features_{task_name} order by year, ra").df()


@task
def train_task(settings: Settings, frame: pd.DataFrame, task_name: str) -> TrainingResult:
    """Fit the candidates on the earlier years and evaluate them on the latest (pure, in modeling/)."""
    return train_candidates(
        frame, task_name, recall_target=settings.recall_target, seed=settings.seed, audit_max_auc=settings.audit_max_auc
    )


def champion_on_same_test(registry: Registry, frame: pd.DataFrame, task_name: str) -> dict[str, Any] | None:
    """The current champion's metrics on the candidate's test year (None when there is no fair figure).

    A champion refitted on all labelled years has seen the test year, so scoring it there would
    be in-sample; its own out-of-time figures on that year, recorded when it was trained, are
    the fair comparison. A champion that never saw the test year is scored on it afresh.
    """
    version = registry.champion(task_name)
    split = split_out_of_time(frame)
    if version is None or split.test is None:
        return None
    try:
        model, metadata = registry.load_checked(task_name, version)
    except PassosError:
        return None
    if list(model.feature_names) != feature_names(task_name):
        return None  # an older feature contract: the figures would not be comparable
    if split.test_year in fit_years(metadata):
        recorded = (metadata.get("metrics") or {}).get("test")
        if metadata.get("test_year") == split.test_year and recorded:
            return dict(recorded) | {"version": version, "source": "recorded out-of-time figures"}
        return None
    y = split.test["target"].to_numpy(dtype=np.float64)
    metrics = evaluate(y, model.predict_proba(encode_frame(split.test, task_name)), float(model.threshold))
    return metrics | {"version": version, "source": "scored on the test year"}


@task
def gate_task(
    settings: Settings, result: TrainingResult, champion: dict[str, Any] | None, min_recall: float
) -> Verdict:
    """The recall gate on the chosen candidate's held-out figures."""
    return evaluate_gate(
        result.candidates[result.chosen].test_metrics,
        champion,
        min_recall=min_recall,
        min_precision=settings.gate_min_precision,
        tolerance=settings.gate_tolerance,
    )


def _code_version() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        )
        if rev.returncode == 0 and rev.stdout.strip():
            return f"{__version__}+{rev.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return __version__


def frame_sha256(frame: pd.DataFrame) -> str:
    """A stable fingerprint of the training data."""
    labelled = frame.loc[frame["target"].notna()].sort_values(["year", "ra"])
    return hashlib.sha256(labelled.to_csv(index=False).encode()).hexdigest()


@task
def register_task(
    settings: Settings,
    frame: pd.DataFrame,
    result: TrainingResult,
    verdict: Verdict,
    champion: dict[str, Any] | None,
) -> dict[str, Any]:
    """Save the version (refit on all labelled years when accepted), its card; promote when accepted."""
    registry = Registry.from_settings(settings)
    chosen = result.candidates[result.chosen]
    served = chosen.bundle
    if verdict.accepted and settings.refit_on_all and result.protocol == "out_of_time":
        served = refit_on_all(
            chosen,
            frame,
            recall_target=settings.recall_target,
            seed=settings.seed,
            audit_max_auc=settings.audit_max_auc,
        )
    labelled = frame.loc[frame["target"].notna()]
    check_input = encode_frame(labelled.head(1), result.task)[0].tolist()
    card_facts = result.card_metadata()
    metadata = {
        "task": result.task,
        "kind": served.kind,
        "protocol": result.protocol,
        "served_model": served.metadata.get("protocol", result.protocol),
        "train_years": list(result.train_years),
        "test_year": result.test_year,
        "threshold": served.threshold,
        "features": [asdict(spec) for spec in feature_specs(result.task)],
        "metrics": {
            "test": chosen.test_metrics,
            "oof": chosen.oof_metrics,
            "candidates": card_facts["candidates"],
            "champion_on_same_test": champion,
        },
        "gate": verdict.as_dict() | {"min_recall": verdict.checks.get("recall", {}).get("limit")},
        "selection_rule": result.selection_rule,
        "feature_aucs": result.feature_aucs,
        "params": served.metadata.get("params", {}),
        "seed": result.seed,
        "training_rows": len(labelled),
        "training_data_sha256": frame_sha256(frame),
        "code_version": _code_version(),
        "check_input": check_input,
    }
    importance = served.feature_importance()

    version = registry.new_version()

    def extras(directory: Path) -> None:
        write_card(
            directory,
            task=result.task,
            version=version,
            metadata=card_facts | {"gate": verdict.as_dict(), "served_model": metadata["served_model"]},
            y_true=chosen.test_predictions.y_true,
            y_score=chosen.test_predictions.y_score,
            threshold=chosen.bundle.threshold,
            feature_importance=importance,
            groups=chosen.test_predictions.groups,
        )

    registry.save(result.task, served, metadata, version=version, extra_files=extras)
    if verdict.accepted:
        registry.promote(result.task, version, reason="training run: gate passed")
    test = chosen.test_metrics
    return {
        "task": result.task,
        "version": version,
        "kind": served.kind,
        "protocol": result.protocol,
        "accepted": verdict.accepted,
        "reasons": verdict.reasons,
        "test_recall": test.get("recall"),
        "test_precision": test.get("precision"),
        "test_roc_auc": test.get("roc_auc"),
        "champion": registry.champion(result.task),
        "card": str(registry.path(result.task, version) / "card.md"),
    }


def sync_registry_table(settings: Settings) -> int:
    """Mirror the registry's versions into the warehouse table ``model_registry``."""
    rows = Registry.from_settings(settings).registry_rows()
    with connect(settings) as con:
        replace_rows(con, "model_registry", pd.DataFrame(rows), delete_where="true")
    return len(rows)


@task(retries=2, retry_delay_seconds=2)
def sync_registry_task(settings: Settings) -> int:
    """The warehouse copy of the registry (retried: the warehouse may be busy)."""
    return sync_registry_table(settings)


@flow(name="train")
def train_flow(task: str = "all", min_recall: float | None = None) -> Any:
    """Train and gate each task; accepted models become champions, rejected ones are kept for the record.

    Args:
        task: ``current``, ``next_year`` or ``all``.
        min_recall: the gate's minimum test recall (default ``PASSOS_GATE_MIN_RECALL``).
    """
    settings = get_settings()
    logger = get_run_logger()
    tasks = list(TASKS) if task == "all" else [task]
    if any(t not in TASKS for t in tasks):
        raise ValueError(f"unknown task {task!r}; expected current, next_year or all")
    floor = settings.gate_min_recall if min_recall is None else min_recall
    registry = Registry.from_settings(settings)
    outcomes = []
    for name in tasks:
        frame = read_features(settings, name)
        result = train_task(settings, frame, name)
        champion = champion_on_same_test(registry, frame, name)
        verdict = gate_task(settings, result, champion, floor)
        outcome = register_task(settings, frame, result, verdict, champion)
        logger.info("%s", outcome)
        outcomes.append(outcome)
    sync_registry_task(settings)
    refresh_analytics_task(settings)
    create_markdown_artifact(key="train-verdicts", markdown=_markdown(outcomes), description="Recall gate verdicts")
    rejected = sorted(o["task"] for o in outcomes if not o["accepted"])
    if rejected:
        # Visible in the Prefect UI as a state of its own: the run worked, the gate said no.
        return Completed(message=f"gate rejected {rejected}; champions unchanged", name="Rejected", data=outcomes)
    return outcomes


def _markdown(outcomes: list[dict[str, Any]]) -> str:
    lines = [
        "| task | version | model | verdict | recall | precision | ROC-AUC | reasons |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        verdict = "accepted" if o["accepted"] else "**rejected**"
        figures = [
            f"{o[k]:.3f}" if isinstance(o[k], float) else "n/a"
            for k in ("test_recall", "test_precision", "test_roc_auc")
        ]
        lines.append(
            f"| {o['task']} | {o['version']} | {o['kind']} | {verdict} | {' | '.join(figures)} | {'; '.join(o['reasons'])} |"
        )
    return "\n".join(lines)
