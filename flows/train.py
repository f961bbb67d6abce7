"""The train flow: features → candidates → out-of-time evaluation → recall gate → registry."""

from __future__ import annotations

import hashlib
import logging
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed, State

from features.featuresets import TASKS, encode_frame, feature_names, feature_specs
from flows.refresh import refresh_analytics_task
from flows.run_logs import project_logs
from modeling.baselines import baseline_flags
from modeling.bundle import ModelBundle
from modeling.calibration import CalibrationError
from modeling.card import baseline_sections, served_sections, write_card
from modeling.evaluation import evaluate
from modeling.gate import Verdict, evaluate_gate, hold_reason
from modeling.refit import ArtifactCheck, check_artifact, refit_on_all
from modeling.registry import Registry
from modeling.served import held_out_router, served_figures, served_lines
from modeling.splits import split_out_of_time
from modeling.training import TrainingResult, train_candidates
from modeling.variants import DESCRIPTIONS, VARIANT_ORDER
from monitoring.drift import fit_years
from passos import __version__
from passos.errors import PassosError
from passos.settings import PROJECT_ROOT, Settings, get_settings
from warehouse.connection import connect, replace_rows

# The deployments' `task` parameter: an enum, so the Prefect UI offers a dropdown and Prefect
# refuses a misspelt value ("curent") when the run is created, before anything starts.
TaskChoice = Literal["all", "current", "next_year"]

logger = logging.getLogger(__name__)


@task
def read_features(settings: Settings, task_name: str) -> pd.DataFrame:
    """The task's feature view, every student-year (the target is null where unknown)."""
    with connect(settings, read_only=True) as con:
        return con.execute(f"select * from features_{task_name} order by year, ra").df()


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


def champion_on_same_test(registry: Registry, frame: pd.DataFrame, task_name: str) -> dict[str, Any] | None:
    """The champion's metrics on the candidate's test year, with how it was judged (None: no champion).

    A champion refitted on all labelled years has seen the test year, so scoring it there would
    be in-sample; its own out-of-time figures on that year, recorded when it was trained, are
    the fair comparison. A champion that never saw the test year is scored on it afresh. When
    neither is possible the dict holds only the champion's ``protocol`` and ``test_year``, which
    the gate uses to hold a candidate judged by a weaker protocol.
    """
    version = registry.champion(task_name)
    split = split_out_of_time(frame)
    if version is None:
        return None
    try:
        model, metadata = registry.load_checked(task_name, version)
    except PassosError:
        return None
    judged = {"version": version, "protocol": metadata.get("protocol"), "test_year": metadata.get("test_year")}
    if split.test is None or list(model.feature_names) != feature_names(task_name):
        return judged
    if split.test_year in fit_years(metadata):
        recorded = (metadata.get("metrics") or {}).get("test")
        if metadata.get("test_year") == split.test_year and recorded:
            return judged | dict(recorded) | {"source": "recorded out-of-time figures"}
        return judged
    y = split.test["target"].to_numpy(dtype=np.float64)
    metrics = evaluate(y, model.predict_proba(encode_frame(split.test, task_name)), float(model.threshold))
    return judged | metrics | {"source": "scored on the test year"}


def judge(settings: Settings, result: TrainingResult, champion: dict[str, Any] | None, min_recall: float) -> Verdict:
    """The recall gate on a variant's held-out figures; the full variant is also held against the champion."""
    comparable = champion if champion is not None and "recall" in champion else None
    verdict = evaluate_gate(
        result.best.test_metrics,
        comparable if result.variant == "full" else None,
        min_recall=min_recall,
        min_precision=settings.gate_min_precision,
        tolerance=settings.gate_tolerance,
        min_roc_auc=settings.gate_min_roc_auc,
        min_lift=settings.gate_min_lift,
    )
    verdict.flags = baseline_flags(result.baselines)
    if result.variant == "full":
        reason = hold_reason({"protocol": result.protocol, "test_year": result.test_year}, champion)
        if reason is not None:
            verdict.held, verdict.held_reason = True, reason
    return verdict


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
    verdicts = {variant: judge(settings, result, champion, min_recall) for variant, result in results.items()}
    return gate_state(next(iter(results.values())).task, verdicts)


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


def _served_variants(
    settings: Settings,
    frame: pd.DataFrame,
    results: dict[str, TrainingResult],
    verdicts: dict[str, Verdict],
) -> tuple[dict[str, ModelBundle], dict[str, ArtifactCheck]]:
    """Each accepted variant as it will be served (refitted on all labelled years), and its check."""
    refit = settings.refit_on_all and results["full"].protocol == "out_of_time"
    served: dict[str, ModelBundle] = {}
    checks: dict[str, ArtifactCheck] = {}
    for variant, result in results.items():
        verdict = verdicts[variant]
        if not verdict.accepted:
            continue
        try:
            bundle = (
                refit_on_all(
                    result.best,
                    frame,
                    recall_target=settings.recall_target,
                    seed=settings.seed,
                    audit_max_auc=settings.audit_max_auc,
                )
                if refit
                else result.best.bundle
            )
        except CalibrationError as error:
            if variant == "full":
                raise
            logger.warning("variant %s of %s is not served: its refit %s", variant, result.task, error)
            continue
        check = check_artifact(bundle, frame, recall_target=settings.recall_target)
        test = result.best.test_metrics
        bundle.metadata.update(
            gate=verdict.as_dict() | {"accepted": verdict.accepted and check.passed},
            artifact_check=check.as_dict(),
            out_of_time={
                "protocol": result.protocol,
                "test_year": result.test_year,
                "recall": test.get("recall"),
                "precision": test.get("precision"),
                "roc_auc": test.get("roc_auc"),
            },
        )
        served[variant], checks[variant] = bundle, check
    return served, checks


def served_path_figures(
    frame: pd.DataFrame, results: dict[str, TrainingResult], served: list[str], *, seed: int
) -> dict[str, Any] | None:
    """The out-of-time figures of the served path: the variants fitted without the test year, routed
    as the service routes (``modeling.served``), over the test year (None without one)."""
    split = split_out_of_time(frame)
    if split.test is None:
        return None
    router = held_out_router(results["full"].best.bundle, [results[name].best.bundle for name in served])
    return served_figures(router, split.test, results["full"].task, seed=seed)


def _variant_summary(
    result: TrainingResult, verdict: Verdict, bundle: ModelBundle | None, check: ArtifactCheck | None
) -> dict[str, Any]:
    test = result.best.test_metrics
    served = bundle is not None and check is not None and check.passed and verdict.accepted
    return {
        "description": DESCRIPTIONS[result.variant],
        "kind": result.chosen,
        "used": list(result.best.bundle.metadata["used"]),
        "required": list((bundle or result.best.bundle).required),
        "served": served,
        "threshold": None if bundle is None else bundle.threshold,
        "out_of_time": {
            k: test.get(k) for k in ("n", "positives", "recall", "precision", "roc_auc", "pr_auc", "brier")
        },
        "reliability_test_year": test.get("reliability"),
        "baselines": result.baselines,
        "gate": verdict.as_dict(),
        "artifact_check": None if check is None else check.as_dict(),
    }


@task
def register_task(
    settings: Settings,
    frame: pd.DataFrame,
    results: dict[str, TrainingResult],
    verdicts: dict[str, Verdict],
    champion: dict[str, Any] | None,
    min_recall: float,
) -> dict[str, Any]:
    """Save the version (every accepted variant refitted and checked), its card; promote when accepted.

    The version is accepted when the full variant passed the gate and its served artifact
    passed :func:`modeling.refit.check_artifact`; it is promoted when, in addition, the gate did
    not hold it for review.
    """
    registry = Registry.from_settings(settings)
    full = results["full"]
    verdict = verdicts["full"]
    chosen = full.best
    served, checks = _served_variants(settings, frame, results, verdicts)
    primary = served.get("full", chosen.bundle)
    check = checks.get("full")
    accepted = verdict.accepted and check is not None and check.passed
    reasons = list(verdict.reasons) + ([] if check is None else [f"artifact check: {p}" for p in check.problems])
    primary.variants = [b for name, b in served.items() if name != "full" and b.metadata["gate"]["accepted"]]
    served_path = served_path_figures(frame, results, [b.variant for b in primary.variants], seed=settings.seed)
    labelled = frame.loc[frame["target"].notna()]
    check_input = encode_frame(labelled.head(1), full.task)[0].tolist()
    card_facts = full.card_metadata()
    refitted = primary.metadata.get("protocol") == "refit_all_years"
    gate = verdict.as_dict() | {
        "accepted": accepted,
        "reasons": reasons,
        "min_recall": min_recall,
        "auto_promote": accepted and not verdict.held,
    }
    metadata = {
        "task": full.task,
        "kind": primary.kind,
        "protocol": full.protocol,
        "served_model": primary.metadata.get("protocol", full.protocol),
        "train_years": list(full.train_years),
        "test_year": full.test_year,
        "fit_years": sorted(int(y) for y in labelled["year"].unique()) if refitted else list(full.train_years),
        "threshold": primary.threshold,
        "threshold_gap": primary.metadata.get("threshold_gap"),
        "members": len(primary.members),
        "fold_scheme": primary.metadata.get("fold_scheme"),
        "features": [asdict(spec) for spec in feature_specs(full.task)],
        "served_path": served_path,
        "metrics": {
            "test": chosen.test_metrics,
            "oof": chosen.oof_metrics,
            "served_oof": primary.metadata.get("oof_metrics"),
            "candidates": card_facts["candidates"],
            "champion_on_same_test": champion,
            "baselines": full.baselines,
        },
        "reliability": {
            "test_year": chosen.test_metrics.get("reliability"),
            "served_oof": primary.metadata.get("oof_reliability"),
            "served_in_sample": None if check is None else check.reliability,
        },
        "artifact_check": None if check is None else check.as_dict(),
        "variants": {
            name: _variant_summary(result, verdicts[name], served.get(name), checks.get(name))
            for name, result in results.items()
        },
        "gate": gate,
        "selection_rule": full.selection_rule,
        "feature_aucs": full.feature_aucs,
        "params": primary.metadata.get("params", {}),
        "seed": full.seed,
        "training_rows": len(labelled),
        "training_data_sha256": frame_sha256(frame),
        "code_version": _code_version(),
        "check_input": check_input,
    }
    primary.metadata["gate"] = gate
    importance = primary.feature_importance()
    version = registry.new_version()

    def extras(directory: Path) -> None:
        write_card(
            directory,
            task=full.task,
            version=version,
            metadata=card_facts | {"gate": gate, "served_model": metadata["served_model"]},
            y_true=chosen.test_predictions.y_true,
            y_score=chosen.test_predictions.y_score,
            threshold=chosen.bundle.threshold,
            feature_importance=importance,
            groups=chosen.test_predictions.groups,
            extra_sections=[
                *served_lines(served_path, test_year=full.test_year),
                "",
                *served_sections(metadata),
                *baseline_sections(metadata),
            ],
        )

    registry.save(full.task, primary, metadata, version=version, extra_files=extras)
    if gate["auto_promote"]:
        registry.promote(full.task, version, reason="training run: gate passed")
    test = chosen.test_metrics
    return {
        "task": full.task,
        "version": version,
        "kind": primary.kind,
        "protocol": full.protocol,
        "accepted": accepted,
        "held": bool(verdict.held),
        "reasons": reasons + ([verdict.held_reason] if verdict.held_reason else []),
        "test_recall": test.get("recall"),
        "test_precision": test.get("precision"),
        "test_roc_auc": test.get("roc_auc"),
        "served_recall": None if served_path is None else served_path["recall"],
        "served_unknown": None if served_path is None else served_path["shares"]["unknown"],
        "variants_served": ["full", *[b.variant for b in primary.variants]] if accepted else [],
        "champion": registry.champion(full.task),
        "card": str(registry.path(full.task, version) / "card.md"),
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
