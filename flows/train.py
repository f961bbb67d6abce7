"""The train flow: features → candidates → out-of-time evaluation → recall gate → registry."""

from __future__ import annotations

import logging
from typing import Any, Literal, cast

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed, State

from features.featuresets import TASKS
from flows.refresh import refresh_analytics_task
from flows.run_logs import project_logs
from flows.run_owner import record_process
from modeling.calibration import CalibrationError
from modeling.gate import Verdict
from modeling.registry import Registry
from modeling.release import GatePolicy, champion_on_same_test, judge, release
from modeling.training import TrainingResult, train_candidates
from modeling.variants import VARIANT_ORDER
from passos.settings import Settings, get_settings
from warehouse import queries
from warehouse.connection import connect, replace_rows

# The deployments' `task` parameter: an enum, so the Prefect UI offers a dropdown and Prefect
# refuses a misspelt value ("curent") when the run is created, before anything starts.
TaskChoice = Literal["all", "current", "next_year"]

logger = logging.getLogger(__name__)


@task
def read_features(settings: Settings, task_name: str) -> pd.DataFrame:
    """The task's feature view, every student-year (the target is null where unknown)."""
    with connect(settings, read_only=True) as con:
        return queries.task_features(con, task_name)


@task
def train_task(settings: Settings, frame: pd.DataFrame, task_name: str) -> dict[str, TrainingResult]:
    """Fit each variant's candidates on the earlier years and evaluate them on the latest (pure, in modeling/).

    A variant other than ``full`` whose candidates all fail calibration is left out (logged);
    the ``full`` variant's failure ends the run.
    """
    results: dict[str, TrainingResult] = {}
    for variant in VARIANT_ORDER:
        try:
            results[variant] = train_candidates(
                frame,
                task_name,
                recall_target=settings.recall_target,
                seed=settings.seed,
                audit_max_auc=settings.audit_max_auc,
                variant=variant,
            )
        except CalibrationError as error:
            if variant == "full":
                raise
            logger.warning("variant %s of %s is not trained: %s", variant, task_name, error)
    return results


@task
def gate_task(
    settings: Settings, results: dict[str, TrainingResult], champion: dict[str, Any] | None, min_recall: float
) -> State[dict[str, Verdict]]:
    """The recall gate on every variant's chosen candidate; the task run's state says the verdict.

    A rejection of the full variant ends this task run in a FAILED-type state named ``Rejected``
    whose message is the reason: the Prefect UI shows this task red, with "why" on its first
    screen, beside the red run. Otherwise the run is Completed and its message names the verdict
    (and any variant the gate turned away). The verdicts are the state's data either way.
    """
    task_name = next(iter(results.values())).task
    policy = GatePolicy.from_settings(settings, task_name, min_recall=min_recall)
    verdicts = {variant: judge(policy, result, champion) for variant, result in results.items()}
    return gate_state(task_name, verdicts)


def gate_state(task_name: str, verdicts: dict[str, Verdict]) -> State[dict[str, Verdict]]:
    """The gate task's final state: ``Rejected`` (FAILED-type) with the reasons, else Completed with the verdict."""
    full = verdicts["full"]
    if not full.accepted:
        return Failed(name="Rejected", message=f"gate rejected {task_name}: {'; '.join(full.reasons)}", data=verdicts)
    turned_away = [f"{name} ({'; '.join(v.reasons)})" for name, v in verdicts.items() if not v.accepted]
    message = f"gate accepted {task_name}" + (f"; variants not served: {', '.join(turned_away)}" if turned_away else "")
    if full.held:
        message += f"; held for review: {full.held_reason}"
    return Completed(message=message, data=verdicts)


@task
def register_task(
    settings: Settings,
    frame: pd.DataFrame,
    results: dict[str, TrainingResult],
    verdicts: dict[str, Verdict],
    champion: dict[str, Any] | None,
    min_recall: float,
) -> dict[str, Any]:
    """Save, card and (when the gate said so) promote the version: :func:`modeling.release.release`."""
    return release(settings, frame, results, verdicts, champion, min_recall)


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


@flow(name="train", on_running=[record_process])
def train_flow(task: TaskChoice = "all") -> Any:
    """Train and gate each task; accepted models become champions, rejected ones are kept for the record.

    The gate's recall floor is the task's setting (``PASSOS_GATE_MIN_RECALL_CURRENT``,
    ``PASSOS_GATE_MIN_RECALL_NEXT_YEAR``): one configuration for every way a run starts.
    A rejection ends the run in a FAILED-type state named ``Rejected`` (red in the UI, caught
    by automations on *Failed*), with the verdicts as the ``train-verdicts`` artifact.

    Args:
        task: ``current``, ``next_year`` or ``all``.
    """
    settings = get_settings()
    logger = get_run_logger()
    tasks = list(TASKS) if task == "all" else [task]
    if any(t not in TASKS for t in tasks):
        raise ValueError(f"unknown task {task!r}; expected current, next_year or all")
    registry = Registry.from_settings(settings)
    outcomes = []
    with project_logs():
        for name in tasks:
            floor = settings.gate_min_recall(name)
            frame = read_features(settings, name)
            results = train_task(settings, frame, name)
            champion = champion_on_same_test(registry, frame, name)
            gated = gate_task(settings, results, champion, floor, return_state=True)  # Rejected is a verdict
            verdicts = cast("dict[str, Verdict]", gated.result(raise_on_failure=False))
            outcome = register_task(settings, frame, results, verdicts, champion, floor)
            logger.info(
                "%s: %s %s (%s)",
                name,
                outcome["version"],
                "accepted" if outcome["accepted"] else "REJECTED",
                "; ".join(outcome["reasons"]) or "every check passed",
            )
            outcomes.append(outcome)
        sync_registry_task(settings)
        refresh_analytics_task(settings)
    create_markdown_artifact(key="train-verdicts", markdown=_markdown(outcomes), description="Recall gate verdicts")
    return final_state(outcomes)


def final_state(outcomes: list[dict[str, Any]]) -> Any:
    """The train run's end: the outcomes, or a FAILED-type verdict state ops cannot miss."""
    rejected = sorted(o["task"] for o in outcomes if not o["accepted"])
    if rejected:
        # FAILED-type on purpose: the run worked, but nothing new is served, and ops must see it.
        reasons = "; ".join(f"{o['task']}: {', '.join(o['reasons'])}" for o in outcomes if not o["accepted"])
        unchanged = "champion unchanged" if len(rejected) == 1 else "champions unchanged"
        return Failed(message=f"gate rejected {reasons} ({unchanged})", name="Rejected", data=outcomes)
    held = sorted(o["task"] for o in outcomes if o.get("held"))
    if held:
        # Accepted on its own bars but judged by a weaker protocol than the champion: nothing new
        # is served until a person decides, so this is not green either.
        reasons = "; ".join(f"{o['task']}: {o['reasons'][-1]}" for o in outcomes if o.get("held"))
        return Failed(
            message=f"held for review {held}; champions unchanged. {reasons}", name="HeldForReview", data=outcomes
        )
    return outcomes


def _markdown(outcomes: list[dict[str, Any]]) -> str:
    lines = [
        "| task | version | model | verdict | recall | precision | ROC-AUC | served: recall (unknown = missed) "
        "| served: unknown | reasons |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        verdict = "accepted" if o["accepted"] else "**rejected**"
        figures = [
            f"{o.get(k):.3f}" if isinstance(o.get(k), float) else "n/a"
            for k in ("test_recall", "test_precision", "test_roc_auc", "served_recall", "served_unknown")
        ]
        lines.append(
            f"| {o['task']} | {o['version']} | {o['kind']} | {verdict} | {' | '.join(figures)} | {'; '.join(o['reasons'])} |"
        )
    return "\n".join(lines)
