"""Factories of synthetic data shaped like the real PEDE data, for fast unit tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.featuresets import feature_specs


def make_feature_frame(
    task: str = "current",
    *,
    years: tuple[int, ...] = (2022, 2023, 2024),
    n_per_year: int = 300,
    seed: int = 0,
    signal: float = 1.0,
) -> pd.DataFrame:
    """A feature frame (``ra, year, target`` + the task's features) with a learnable target.

    The risk rises with ``idade_menos_fase`` and falls with ``ida``; ``signal`` scales how
    learnable it is (0 = pure noise). Students recur across years under the same ``ra``.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for year in years:
        ras = [f"RA-{i}" for i in rng.choice(int(n_per_year * 1.5), size=n_per_year, replace=False)]
        fase = rng.integers(0, 9, n_per_year).astype(float)
        idade = fase + 7 + rng.integers(0, 4, n_per_year)
        data: dict[str, object] = {"ra": ras, "year": year}
        for spec in feature_specs(task):
            if spec.kind == "categorical":
                data[spec.name] = rng.choice(spec.categories, n_per_year)
            elif spec.name == "fase":
                data[spec.name] = fase
            elif spec.name == "idade":
                data[spec.name] = idade
            elif spec.name == "idade_menos_fase":
                data[spec.name] = idade - fase
            else:
                lo = 0.0 if spec.minimum is None else spec.minimum
                hi = 10.0 if spec.maximum is None else spec.maximum
                values = rng.uniform(lo, hi, n_per_year)
                values[rng.random(n_per_year) < 0.1] = np.nan
                data[spec.name] = values
        frame = pd.DataFrame(data)
        ida = frame["ida"].fillna(5.0).to_numpy()
        logit = signal * (1.5 * (idade - fase - 8.5) - 0.5 * (ida - 5.0)) + rng.normal(0, 1, n_per_year)
        frame["target"] = (logit > 0).astype(float)
        rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def register_model(
    registry: Any,
    task: str,
    *,
    kind: str = "lightgbm",
    seed: int = 0,
    accepted: bool = True,
    variants: tuple[str, ...] = ("example",),
) -> str:
    """Fit a small model of ``kind`` on synthetic data and save it in ``registry`` (not promoted).

    The primary is the ``full`` variant; each of ``variants`` is fitted too and attached as a
    served sibling (gate accepted), as the train flow does.
    """
    from dataclasses import asdict

    from features.featuresets import encode_frame
    from modeling.training import fit_candidate

    frame = make_feature_frame(task, years=(2022, 2023), n_per_year=200, seed=seed)
    bundle, _ = fit_candidate(kind, frame, task, recall_target=0.9, seed=seed)  # type: ignore[arg-type]
    # The risk lives in fields the example variant does not see; a lower IPV among the students
    # behind gives it something to rank by (a variant whose scores do not rank cannot be calibrated).
    seen = frame.assign(ipv=frame["ipv"] + np.where(frame["target"] == 1, -2.0, 2.0))
    for name in variants:
        sibling, _ = fit_candidate(kind, seen, task, recall_target=0.9, seed=seed, variant=name)  # type: ignore[arg-type]
        sibling.metadata.update(
            gate={"accepted": True, "reasons": []},
            out_of_time={"recall": 0.91, "precision": 0.6, "roc_auc": 0.8, "test_year": 2024},
        )
        bundle.variants.append(sibling)
    bundle.metadata["out_of_time"] = {"recall": 0.95, "precision": 0.8, "roc_auc": 0.9, "test_year": 2024}
    metadata = {
        "task": task,
        "kind": kind,
        "protocol": "out_of_time",
        "features": [asdict(spec) for spec in feature_specs(task)],
        "threshold": bundle.threshold,
        "metrics": {"test": {"recall": 0.95, "precision": 0.8, "roc_auc": 0.9}},
        "gate": {"accepted": accepted, "reasons": [] if accepted else ["made to be rejected"]},
        "check_input": encode_frame(frame.head(1), task)[0].tolist(),
    }
    return str(registry.save(task, bundle, metadata))
