"""The gate's policy is read from the settings in one place, floors included."""

from __future__ import annotations

import pytest

from modeling.release import GatePolicy
from passos.settings import Settings, get_settings


def test_the_policy_carries_every_floor_of_the_settings(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    monkeypatch.setenv("PASSOS_GATE_MIN_RECALL_NEXT_YEAR", "0.61")
    monkeypatch.setenv("PASSOS_GATE_MIN_PRECISION", "0.42")
    monkeypatch.setenv("PASSOS_GATE_MIN_ROC_AUC", "0.77")
    monkeypatch.setenv("PASSOS_GATE_TOLERANCE", "0.03")
    monkeypatch.setenv("PASSOS_GATE_MIN_LIFT", "1.3")
    get_settings.cache_clear()
    policy = GatePolicy.from_settings(get_settings(), "next_year")
    assert policy == GatePolicy(min_recall=0.61, min_precision=0.42, tolerance=0.03, min_roc_auc=0.77, min_lift=1.3)
    assert GatePolicy.from_settings(get_settings(), "next_year", min_recall=0.5).min_recall == 0.5
    with pytest.raises(ValueError, match="unknown task"):
        GatePolicy.from_settings(get_settings(), "last_year")
