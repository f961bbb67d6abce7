"""The drift check against a champion: a planted shift is named, identical data is quiet."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.featuresets import encode_frame
from modeling.training import fit_candidate
from monitoring.drift import Thresholds, check, fit_years, frame_from_log
from tests.factories import make_feature_frame

THRESHOLDS = Thresholds(share_drifted=0.3, score_psi=0.2, recall_drop=0.05)


@pytest.fixture(scope="module")
def model_and_data() -> tuple[object, pd.DataFrame]:
    frame = make_feature_frame("current", years=(2022, 2023), n_per_year=400, seed=3)
    bundle, _ = fit_candidate("logistic", frame, "current", recall_target=0.9, seed=0)
    return bundle, frame


def test_identical_data_shows_no_drift(model_and_data: tuple[object, pd.DataFrame]) -> None:
    model, frame = model_and_data
    outcome = check(model, frame, frame.copy(), task="current", thresholds=THRESHOLDS, champion_recall=0.9)
    assert outcome.result.drifted_columns == [] and outcome.verdict == "ok"
    assert outcome.score_psi == pytest.approx(0.0, abs=1e-6)


def test_a_planted_shift_is_detected_and_named(model_and_data: tuple[object, pd.DataFrame]) -> None:
    model, frame = model_and_data
    shifted = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    shifted["ida"] = np.clip(shifted["ida"] * 0.3, 0, 10)
    outcome = check(model, frame, shifted, task="current", thresholds=THRESHOLDS, champion_recall=None)
    assert "ida" in outcome.result.drifted_columns
    assert outcome.score_psi is not None and outcome.score_psi > 0.0
    assert outcome.performance is not None  # labels present: the champion's real recall on them


def test_a_recall_drop_recommends_retraining(model_and_data: tuple[object, pd.DataFrame]) -> None:
    model, frame = model_and_data
    flipped = frame.copy()
    flipped["target"] = 1.0 - flipped["target"]
    outcome = check(model, frame, flipped, task="current", thresholds=THRESHOLDS, champion_recall=0.95)
    assert outcome.verdict == "retrain recommended"
    assert any("recall" in reason for reason in outcome.reasons)


def test_fit_years_and_log_frames(model_and_data: tuple[object, pd.DataFrame]) -> None:
    assert fit_years({"train_years": [2022, 2023], "test_year": 2024, "served_model": "refit_all_years"}) == [
        2022,
        2023,
        2024,
    ]
    assert fit_years({"train_years": [2022], "test_year": 2023, "served_model": "out_of_time"}) == [2022]
    logged = pd.DataFrame(
        {"fase": [3, 4], "idade": [12, np.nan], "genero": ["F", None], "iaa": [7.0, 8.0], "risk_score": [0.2, 0.8]}
    )
    frame = frame_from_log(logged, "current")
    assert list(frame["genero"]) == ["F", None]
    assert frame.loc[0, "idade_menos_fase"] == 9.0
    assert frame_from_log(pd.DataFrame(), "current").empty
    model, _ = model_and_data
    assert len(model.predict_proba(encode_frame(frame, "current"))) == 2  # type: ignore[attr-defined]
