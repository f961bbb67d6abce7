"""What clients and ops see from the champions trained on the real data (not factory models with planted figures).

One trained home per session (``trained_home``); the service runs on a copy of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest

from features.featuresets import encode_frame, feature_names
from modeling.candidates import MONOTONE
from modeling.registry import Registry
from passos.settings import TASKS, Settings
from serving.schemas import DERIVED, EXAMPLE, FULL_EXAMPLE
from tests.support.homes import TrainedHome
from tests.support.service import Running, running_service

pytestmark = [pytest.mark.integration, pytest.mark.data, pytest.mark.slow]
# README ("Models"): LightGBM is monotone in IDA and in the setback; -1: raising it never raises the risk.
DOCUMENTED_MONOTONE = {"ida": -1, "defasagem": -1, "prev_defasagem": -1}
# README: the `core` variant's example request
CORE_STUDENT = EXAMPLE | {
    "idade": 13,
    "data_nasc": "2011-05-02",
    "year": 2024,
    "ida": 5.5,
    "ieg": 7.0,
    "genero": "F",
    "instituicao": "publica",
}


@pytest.fixture(scope="module")
def served(trained_home: TrainedHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    home = trained_home.copy_to(tmp_path_factory.mktemp("real-champion") / "home")
    with running_service(Settings(home=home)) as running:
        yield running


def features(settings: Settings, task: str, where: str = "target is not null") -> pd.DataFrame:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(f"select * from features_{task} where {where}").df()


@pytest.mark.parametrize("task", TASKS)
def test_the_six_field_payload_is_unknown_with_what_to_add(served: Running, task: str) -> None:
    """No validated variant can tell from these six fields: the answer says so, never a guess."""
    with served.client() as client:
        body = client.post("/predict", json=EXAMPLE | {"task": task}).json()
    assert body["risk_label"] == "unknown" and body["risk_score"] is None, body
    assert body["variant"] is None and body["threshold"] is None and body["reasons"] == []
    assert body["needed"] and not set(body["needed"]) & set(EXAMPLE)


def test_a_complete_student_is_answered_by_full_and_the_readme_core_student_by_core(served: Running) -> None:
    registry = served.registry
    with served.client() as client:
        full = client.post("/predict", json=FULL_EXAMPLE).json()
        core = client.post("/predict", json=CORE_STUDENT).json()
    variants = registry.metadata("current", registry.champion("current"))["variants"]
    for body, variant in ((full, "full"), (core, "core")):
        assert body["variant"] == variant, body
        assert body["threshold"] == pytest.approx(variants[variant]["threshold"])
        assert body["variant_recall"] == pytest.approx(variants[variant]["out_of_time"]["recall"])
        assert body["risk_label"] == ("high" if body["risk_score"] >= body["threshold"] else "low")
        assert body["needed"] == []


@pytest.mark.parametrize("task", TASKS)
def test_every_variant_was_gated_with_the_floors_of_the_settings(trained_home: TrainedHome, task: str) -> None:
    """The floors the flow applied, as recorded: recall per task, precision and ROC-AUC; a variant below one is not served."""
    settings = trained_home.settings
    registry = Registry.from_settings(settings)
    meta = registry.metadata(task, registry.champion(task))
    floors = {
        "min_recall": settings.gate_min_recall(task),
        "min_precision": settings.gate_min_precision,
        "min_roc_auc": settings.gate_min_roc_auc,
    }
    assert meta["gate"]["accepted"] is True
    for name, variant in meta["variants"].items():
        checks = variant["gate"]["checks"]
        assert {check: checks.get(check, {}).get("limit") for check in floors} == floors, name
        figures = variant["out_of_time"]
        below = [
            check
            for check, metric in (("min_recall", "recall"), ("min_precision", "precision"), ("min_roc_auc", "roc_auc"))
            if not (isinstance(figures[metric], float) and figures[metric] >= floors[check] - 1e-12)
        ]
        if below:
            assert variant["served"] is False and not variant["gate"]["accepted"], (name, below)
        if variant["served"]:
            assert not below, name


@pytest.mark.parametrize("task", TASKS)
def test_the_behind_students_of_the_latest_year_sent_with_their_fields_are_found(
    served: Running, trained_home: TrainedHome, task: str
) -> None:
    """Each behind student of the latest labelled year, sent with every field it has: never 'unknown', and at
    least the recall target of them answered 'high' (the served artifact's own check)."""
    settings = trained_home.settings
    frame = features(settings, task)
    latest = frame[frame["year"] == frame["year"].max()]
    behind = latest[latest["target"] == 1]
    names = [n for n in feature_names(task) if n not in DERIVED]
    students = [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items() if not _missing(v)}
        for row in behind[names].to_dict("records")
    ]
    answers: list[dict[str, Any]] = []
    with served.client(timeout=120) as client:
        for start in range(0, len(students), 500):
            response = client.post("/predict/batch", json={"task": task, "students": students[start : start + 500]})
            assert response.status_code == 200, response.text[:2000]
            answers += response.json()["predictions"]
    labels = pd.Series([a["risk_label"] for a in answers]).value_counts().to_dict()
    assert labels.get("unknown", 0) == 0, labels
    assert labels.get("high", 0) / len(answers) >= settings.recall_target, labels


@pytest.mark.parametrize(
    ("task", "feature"), [(t, f) for t in TASKS for f in sorted(DOCUMENTED_MONOTONE) if f in feature_names(t)]
)
def test_the_declared_monotone_constraints_hold_on_the_champion(
    trained_home: TrainedHome, task: str, feature: str
) -> None:
    """Raising a feature documented monotone never moves the champion's score against its direction."""
    settings = trained_home.settings
    registry = Registry.from_settings(settings)
    model, _ = registry.load_checked(task, registry.champion(task))
    frame = features(settings, task).sample(n=300, random_state=0)
    observed = frame[feature].dropna()
    grid = np.unique(np.quantile(observed, np.linspace(0, 1, 9)))
    assert grid.size >= 3, (feature, grid)
    scores = []
    for value in grid:
        moved = frame.copy()
        moved[feature] = value
        scores.append(model.predict_proba(encode_frame(moved, task)))
    assert MONOTONE.get(feature) == DOCUMENTED_MONOTONE[feature]  # what LightGBM is told
    steps = np.diff(np.vstack(scores), axis=0) * DOCUMENTED_MONOTONE[feature]  # >= 0 when the direction holds
    assert steps.min() >= -1e-9, (feature, float(steps.min()))
    assert steps.max() > 0, f"the champion ignores {feature}: the constraint is not exercised"


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA
