"""The model card: markdown facts and the four plots, quickly, even on degenerate inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modeling.card import write_card
from modeling.training import TrainingResult, train_candidates
from tests.factories import make_feature_frame

PLOTS = ("roc.png", "pr.png", "calibration.png", "importance.png")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def result() -> TrainingResult:
    frame = make_feature_frame("current", n_per_year=200, seed=8)
    return train_candidates(frame, "current", recall_target=0.9, seed=1, kinds=("logistic", "rule"))


def test_card_writes_markdown_and_plots(result: TrainingResult, tmp_path: Path) -> None:
    best = result.best
    card = write_card(
        tmp_path / "v1",
        task="current",
        version="v1",
        metadata=result.card_metadata(),
        y_true=best.test_predictions.y_true,
        y_score=best.test_predictions.y_score,
        threshold=best.bundle.threshold,
        feature_importance=best.bundle.feature_importance(),
        groups=best.test_predictions.groups,
    )
    assert card == tmp_path / "v1" / "card.md"
    for name in PLOTS:
        assert (tmp_path / "v1" / "plots" / name).read_bytes().startswith(PNG)
    text = card.read_text(encoding="utf-8")
    assert "# Model card: `current`, version `v1`" in text
    assert "**out_of_time**" in text and "2022, 2023" in text and "test year **2024**" in text
    assert f"**{result.chosen}** (chosen)" in text
    assert f"{best.bundle.threshold:.3f}" in text
    assert "| genero | F |" in text and "| instituicao |" in text
    assert "`ian`" in text and "Strongest single features" in text
    assert "## Limitations" in text and "grouped" not in text.split("## Limitations")[1]


def test_card_survives_one_class_and_no_metadata(tmp_path: Path) -> None:
    card = write_card(
        tmp_path,
        task="next_year",
        version="v0",
        metadata={"protocol": "grouped_cv", "warnings": ["lightgbm: too good"]},
        y_true=np.zeros(20),
        y_score=np.linspace(0, 0.5, 20),
        threshold=0.3,
        feature_importance={"ida": 0.7, "ieg": 0.3},
    )
    text = card.read_text(encoding="utf-8")
    assert "Behind next year" in text
    assert "| this model | n/a |" in text  # recall is undefined without positives
    assert "No group labels were given." in text
    assert "Only one labelled year" in text
    assert "> **Warning**: lightgbm: too good." in text
    for name in PLOTS:
        assert (tmp_path / "plots" / name).stat().st_size > 0
