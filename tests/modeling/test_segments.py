"""The operating point per segment: chosen on out-of-fold scores, stored, read per row."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from modeling.segments import BEHIND_NOW, ON_TRACK_NOW, fit_segment_thresholds, segment_of, segment_threshold
from modeling.training import fit_candidate
from tests.factories import make_feature_frame


def test_segment_of_reads_the_sign_of_defasagem() -> None:
    assert [segment_of(v) for v in (-1, 0, 2, None, float("nan"), "x")] == [
        BEHIND_NOW,
        ON_TRACK_NOW,
        ON_TRACK_NOW,
        None,
        None,
        None,
    ]


def test_the_on_track_cut_reaches_its_own_recall_below_the_global_one() -> None:
    rng = np.random.default_rng(0)
    defasagem = np.where(rng.random(2000) < 0.5, -1.0, 0.0)
    on_track = defasagem >= 0
    y = (rng.random(2000) < np.where(on_track, 0.25, 0.7)).astype(float)
    # On-track students score lower overall, so a cut set on everyone misses most of theirs.
    proba = np.clip(np.where(on_track, 0.15, 0.55) + 0.25 * y + rng.normal(0, 0.1, 2000), 0.001, 0.999)
    cuts = fit_segment_thresholds(y, proba, defasagem, threshold=0.6, on_track_recall=0.8)
    assert cuts[BEHIND_NOW]["threshold"] == 0.6
    ot = cuts[ON_TRACK_NOW]
    assert ot["threshold"] < 0.6 and ot["oof_recall"] >= ot["aim"] >= 0.8
    assert ot["n"] == int(on_track.sum()) and ot["positives"] == int(y[on_track].sum())
    assert (proba[on_track & (y == 1)] >= 0.6).mean() < 0.5


class _Bundle:
    def __init__(self) -> None:
        self.threshold = 0.7
        self.metadata: dict[str, Any] = {
            "segment_thresholds": {BEHIND_NOW: {"threshold": 0.7}, ON_TRACK_NOW: {"threshold": 0.3}}
        }


def test_segment_threshold_falls_back_to_the_model_threshold() -> None:
    assert segment_threshold(_Bundle(), {"defasagem": 0}) == (ON_TRACK_NOW, 0.3)
    assert segment_threshold(_Bundle(), {"defasagem": -2}) == (BEHIND_NOW, 0.7)
    assert segment_threshold(_Bundle(), {}) == (None, 0.7)
    bare = _Bundle()
    bare.metadata = {}
    assert segment_threshold(bare, {"defasagem": 0}) == (ON_TRACK_NOW, 0.7)


@pytest.mark.parametrize(("task", "stored"), [("next_year", True), ("current", False)])
def test_training_stores_the_cuts_for_next_year(task: str, stored: bool) -> None:
    frame: pd.DataFrame = make_feature_frame(task, years=(2022, 2023), n_per_year=200, seed=7)
    bundle, _ = fit_candidate("logistic", frame, task, recall_target=0.9, seed=1)
    cuts = bundle.metadata["segment_thresholds"]
    if not stored:
        assert cuts is None
        return
    assert set(cuts) == {BEHIND_NOW, ON_TRACK_NOW}
    assert cuts[BEHIND_NOW]["threshold"] == bundle.threshold
    first = frame.loc[frame["defasagem"].notna()].iloc[0]
    row = dict(zip(bundle.feature_names, first[list(bundle.feature_names)], strict=True))
    assert segment_threshold(bundle, row)[1] == cuts[segment_of(row["defasagem"])]["threshold"]
