"""The served artifact: the chosen procedure re-run on every labelled year, then checked.

The check is on the artifact itself, not on the candidate it came from: a model that is to be
served must find, at its own threshold, at least the recall target of the students of every
year it was fitted on, must use its score range, and comes with its reliability table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.featuresets import encode_frame
from modeling.bundle import ModelBundle
from modeling.calibration import reliability_table
from modeling.evaluation import evaluate
from modeling.leakage import assert_no_leakage
from modeling.threshold import RECALL_CONFIDENCE
from modeling.training import CandidateResult, fit_candidate
from passos.settings import get_settings


@dataclass
class ArtifactCheck:
    """Whether a refitted artifact may be promoted, and why not."""

    passed: bool
    problems: list[str] = field(default_factory=list)
    per_year: dict[str, dict[str, Any]] = field(default_factory=dict)
    score_range: tuple[float, float] = (0.0, 0.0)
    reliability: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (stored as ``metadata["artifact_check"]``)."""
        return {
            "passed": self.passed,
            "problems": list(self.problems),
            "per_year": self.per_year,
            "score_range": list(self.score_range),
            "reliability_in_sample": self.reliability,
        }


def refit_on_all(
    source: ModelBundle | CandidateResult,
    frame: pd.DataFrame,
    *,
    recall_target: float,
    seed: int,
    audit_max_auc: float | None = None,
    recall_confidence: float = RECALL_CONFIDENCE,
) -> ModelBundle:
    """The same kind and variant, cross-fitted on every labelled year (the artifact that is served).

    The procedure is the candidate's: its members, calibration and threshold come from the
    out-of-fold scores of the refitted members, so the served threshold means what the
    evaluated one meant. Its honest out-of-time figures are the candidate's
    (``metadata["evaluated_as"]``).
    """
    bundle = source.bundle if isinstance(source, CandidateResult) else source
    max_auc = get_settings().audit_max_auc if audit_max_auc is None else audit_max_auc
    labelled = frame.loc[frame["target"].notna()].reset_index(drop=True)
    assert_no_leakage(labelled, bundle.task, max_auc=max_auc)
    refit, _ = fit_candidate(
        bundle.kind,
        labelled,
        bundle.task,
        recall_target=recall_target,
        seed=seed,
        recall_confidence=recall_confidence,
        variant=bundle.variant,
    )
    refit.metadata.update(
        protocol="refit_all_years",
        test_year=None,
        evaluated_as={
            "protocol": bundle.metadata.get("protocol"),
            "train_years": bundle.metadata.get("train_years"),
            "test_year": bundle.metadata.get("test_year"),
        },
    )
    return refit


def check_artifact(bundle: ModelBundle, frame: pd.DataFrame, *, recall_target: float) -> ArtifactCheck:
    """Score every labelled year with the artifact at its own threshold; say what fails.

    Checks: recall >= ``recall_target`` on each year (in-sample: a model that cannot find the
    students it was fitted on will not find new ones); the scores reach at least 0.5 and the
    threshold lies strictly inside their range (a model squeezed below 0.39 is not giving
    probabilities).
    """
    labelled = frame.loc[frame["target"].notna()].reset_index(drop=True)
    X = encode_frame(labelled, bundle.task)
    scores = bundle.predict_proba(X)
    y = labelled["target"].to_numpy(dtype=np.float64)
    problems: list[str] = []
    per_year: dict[str, dict[str, Any]] = {}
    for year in sorted(int(v) for v in labelled["year"].unique()):
        rows = (labelled["year"] == year).to_numpy()
        metrics = evaluate(y[rows], scores[rows], bundle.threshold)
        per_year[str(year)] = {k: metrics[k] for k in ("n", "positives", "recall", "precision", "roc_auc")}
        recall = metrics["recall"]
        if recall is not None and recall < recall_target - 1e-12:
            problems.append(
                f"{bundle.variant}: in-sample recall {recall:.3f} on {year} at its own threshold "
                f"{bundle.threshold:.3f} is below the target {recall_target:.2f}"
            )
    low, high = (float(scores.min()), float(scores.max())) if scores.size else (0.0, 0.0)
    if high < 0.5:
        problems.append(
            f"{bundle.variant}: the highest score is {high:.3f}; the scores never say 'more likely than not'"
        )
    if not low < bundle.threshold <= high:
        problems.append(
            f"{bundle.variant}: the threshold {bundle.threshold:.3f} is outside the scores' range [{low:.3f}, {high:.3f}]"
        )
    return ArtifactCheck(
        passed=not problems,
        problems=problems,
        per_year=per_year,
        score_range=(low, high),
        reliability=reliability_table(y, scores),
    )
