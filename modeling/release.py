"""A trained version's release: the gate's policy and verdict, then the version saved, carded and promoted.

The flow says when (``flows/train.py``); this module decides what: which variants are served,
what the version's metadata records, and whether the gate's verdict promotes it.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.featuresets import encode_frame, feature_names, feature_specs
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
from modeling.training import TrainingResult
from modeling.variants import DESCRIPTIONS
from passos import __version__
from passos.errors import PassosError
from passos.settings import PROJECT_ROOT, Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatePolicy:
    """The gate's floors for one task and its allowed drop against the champion, from the settings."""

    min_recall: float
    min_precision: float
    tolerance: float
    min_roc_auc: float
    min_lift: float

    @classmethod
    def from_settings(cls, settings: Settings, task_name: str, *, min_recall: float | None = None) -> GatePolicy:
        """The policy of ``task_name``: its recall floor (``min_recall`` when given) and the shared floors."""
        return cls(
            min_recall=settings.gate_min_recall(task_name) if min_recall is None else min_recall,
            min_precision=settings.gate_min_precision,
            tolerance=settings.gate_tolerance,
            min_roc_auc=settings.gate_min_roc_auc,
            min_lift=settings.gate_min_lift,
        )


def fit_years(metadata: dict[str, Any]) -> list[int]:
    """The years the champion was fitted on (all labelled years when it was refitted).

    The metadata's ``fit_years`` when the training run recorded it; otherwise derived from
    ``train_years``, ``test_year`` and ``served_model`` (versions trained before it existed).
    """
    if metadata.get("fit_years"):
        return sorted({int(y) for y in metadata["fit_years"]})
    years = list(metadata.get("train_years") or [])
    if metadata.get("served_model") == "refit_all_years" and metadata.get("test_year") is not None:
        years.append(int(metadata["test_year"]))
    return sorted({int(y) for y in years})


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


def judge(policy: GatePolicy, result: TrainingResult, champion: dict[str, Any] | None) -> Verdict:
    """The recall gate on a variant's held-out figures; the full variant is also held against the champion."""
    comparable = champion if champion is not None and "recall" in champion else None
    verdict = evaluate_gate(
        result.best.test_metrics,
        comparable if result.variant == "full" else None,
        min_recall=policy.min_recall,
        min_precision=policy.min_precision,
        tolerance=policy.tolerance,
        min_roc_auc=policy.min_roc_auc,
        min_lift=policy.min_lift,
    )
    verdict.flags = baseline_flags(result.baselines)
    if result.variant == "full":
        reason = hold_reason({"protocol": result.protocol, "test_year": result.test_year}, champion)
        if reason is not None:
            verdict.held, verdict.held_reason = True, reason
    return verdict


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


@dataclass
class _Release:
    """A version before it is saved: the served bundle, its metadata and the gate's last word."""

    full: TrainingResult
    primary: ModelBundle
    metadata: dict[str, Any]
    card_facts: dict[str, Any]
    accepted: bool
    held: bool
    reasons: list[str]
    served_path: dict[str, Any] | None


def release(
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

    Returns:
        The run's outcome for the task: version, verdict, reasons, figures and the champion after it.
    """
    registry = Registry.from_settings(settings)
    prepared = _prepare(settings, frame, results, verdicts, champion, min_recall)
    version = _save(registry, prepared)
    full, verdict, test = prepared.full, verdicts["full"], prepared.full.best.test_metrics
    served_path = prepared.served_path
    return {
        "task": full.task,
        "version": version,
        "kind": prepared.primary.kind,
        "protocol": full.protocol,
        "accepted": prepared.accepted,
        "held": bool(verdict.held),
        "reasons": prepared.reasons + ([verdict.held_reason] if verdict.held_reason else []),
        "test_recall": test.get("recall"),
        "test_precision": test.get("precision"),
        "test_roc_auc": test.get("roc_auc"),
        "served_recall": None if served_path is None else served_path["recall"],
        "served_unknown": None if served_path is None else served_path["shares"]["unknown"],
        "variants_served": ["full", *[b.variant for b in prepared.primary.variants]] if prepared.accepted else [],
        "champion": registry.champion(full.task),
        "card": str(registry.path(full.task, version) / "card.md"),
    }


def _prepare(
    settings: Settings,
    frame: pd.DataFrame,
    results: dict[str, TrainingResult],
    verdicts: dict[str, Verdict],
    champion: dict[str, Any] | None,
    min_recall: float,
) -> _Release:
    """The served bundle (with its accepted variants), the gate's final verdict and the version's metadata."""
    full = results["full"]
    verdict = verdicts["full"]
    served, checks = _served_variants(settings, frame, results, verdicts)
    primary = served.get("full", full.best.bundle)
    check = checks.get("full")
    accepted = verdict.accepted and check is not None and check.passed
    reasons = list(verdict.reasons) + ([] if check is None else [f"artifact check: {p}" for p in check.problems])
    primary.variants = [b for name, b in served.items() if name != "full" and b.metadata["gate"]["accepted"]]
    served_path = served_path_figures(frame, results, [b.variant for b in primary.variants], seed=settings.seed)
    gate = verdict.as_dict() | {
        "accepted": accepted,
        "reasons": reasons,
        "min_recall": min_recall,
        "auto_promote": accepted and not verdict.held,
    }
    card_facts = full.card_metadata()
    metadata = _metadata(frame, results, verdicts, champion, primary, served, checks, served_path, card_facts, gate)
    primary.metadata["gate"] = gate
    return _Release(full, primary, metadata, card_facts, accepted, bool(verdict.held), reasons, served_path)


def _metadata(
    frame: pd.DataFrame,
    results: dict[str, TrainingResult],
    verdicts: dict[str, Verdict],
    champion: dict[str, Any] | None,
    primary: ModelBundle,
    served: dict[str, ModelBundle],
    checks: dict[str, ArtifactCheck],
    served_path: dict[str, Any] | None,
    card_facts: dict[str, Any],
    gate: dict[str, Any],
) -> dict[str, Any]:
    """What the registry records of a version: provenance, figures, variants and the gate's verdict."""
    full = results["full"]
    chosen = full.best
    check = checks.get("full")
    labelled = frame.loc[frame["target"].notna()]
    refitted = primary.metadata.get("protocol") == "refit_all_years"
    return {
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
        "check_input": encode_frame(labelled.head(1), full.task)[0].tolist(),
    }


def _save(registry: Registry, prepared: _Release) -> str:
    """Save the version with its model card; promote it when the gate said so. Returns the version."""
    full, primary, metadata = prepared.full, prepared.primary, prepared.metadata
    chosen = full.best
    gate = metadata["gate"]
    importance = primary.feature_importance()
    version = registry.new_version()

    def extras(directory: Path) -> None:
        write_card(
            directory,
            task=full.task,
            version=version,
            metadata=prepared.card_facts | {"gate": gate, "served_model": metadata["served_model"]},
            y_true=chosen.test_predictions.y_true,
            y_score=chosen.test_predictions.y_score,
            threshold=chosen.bundle.threshold,
            feature_importance=importance,
            groups=chosen.test_predictions.groups,
            extra_sections=[
                *served_lines(prepared.served_path, test_year=full.test_year),
                "",
                *served_sections(metadata),
                *baseline_sections(metadata),
            ],
        )

    registry.save(full.task, primary, metadata, version=version, extra_files=extras)
    if gate["auto_promote"]:
        registry.promote(full.task, version, reason="training run: gate passed")
    return version
