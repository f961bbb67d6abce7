"""The gate compares like with like: a candidate judged by a weaker protocol never replaces the champion by itself."""

from __future__ import annotations

import numpy as np
import pytest

from flows.train import champion_on_same_test, final_state, gate_task, register_task, train_task
from modeling.registry import Registry
from passos.settings import Settings
from tests.factories import make_feature_frame, register_model


def test_a_cross_validated_candidate_does_not_replace_an_out_of_time_champion(settings: Settings) -> None:
    registry = Registry.from_settings(settings)
    champion = register_model(registry, "next_year", kind="logistic", seed=0)
    registry.promote("next_year", champion, reason="an out-of-time champion")
    # The newest year's ids changed: no pairs, one labelled pair-year, grouped CV only.
    frame = make_feature_frame("next_year", years=(2023, 2024), n_per_year=200, seed=2)
    frame.loc[frame["year"] == 2024, "target"] = np.nan
    results = train_task.fn(settings, frame, "next_year")
    assert results["full"].protocol == "grouped_cv"
    judged = champion_on_same_test(registry, frame, "next_year")
    assert judged is not None and judged["protocol"] == "out_of_time"
    verdicts = gate_task.fn(settings, results, judged, 0.5).data  # the state's data
    outcome = register_task.fn(settings, frame, results, verdicts, judged, 0.5)
    assert outcome["accepted"] is True and outcome["held"] is True
    state = final_state([outcome])  # what ops see in the Prefect UI: not green, exit 12
    assert state.is_failed() and state.name == "HeldForReview" and "weaker protocol" in state.message
    assert any("weaker protocol" in reason for reason in outcome["reasons"])
    assert registry.champion("next_year") == champion  # not replaced
    meta = registry.metadata("next_year", outcome["version"])
    assert meta["gate"]["auto_promote"] is False and "grouped_cv" in meta["gate"]["held_reason"]
    # A person may still decide: the explicit promotion works and says who decided.
    registry.promote("next_year", outcome["version"], reason="promoted by a person after review")
    assert registry.champion("next_year") == outcome["version"]


def test_the_served_artifact_is_checked_and_described(settings: Settings) -> None:
    frame = make_feature_frame("current", n_per_year=250, seed=11)
    results = train_task.fn(settings, frame, "current")
    verdicts = gate_task.fn(settings, results, None, 0.5).data  # the state's data
    outcome = register_task.fn(settings, frame, results, verdicts, None, 0.5)
    registry = Registry.from_settings(settings)
    model, meta = registry.load_checked("current", outcome["version"])
    assert meta["artifact_check"]["passed"] is True and meta["fit_years"] == [2022, 2023, 2024]
    assert set(meta["artifact_check"]["per_year"]) == {"2022", "2023", "2024"}
    assert meta["reliability"]["test_year"] and meta["reliability"]["served_oof"]
    assert set(meta["variants"]) == {"full", "core", "example"}
    served = {b.variant for b in model.variants}
    assert served == {name for name, v in meta["variants"].items() if v["served"] and name != "full"}
    card = (registry.path("current", outcome["version"]) / "card.md").read_text()
    assert "## The served artifact" in card and "## Variants" in card and "95 % interval" in card
    # the out-of-time figures as clients are answered: the served variants routed over the test year
    served_path = meta["served_path"]
    assert served_path["n"] == int((frame["year"] == 2024).sum()) and sum(served_path["answered"].values()) == 250
    assert served_path["answered"]["full"] > 0 and served_path["bootstrap_95"]["recall"]
    assert "## Out of time, as served" in card and f"| all | {served_path['n']} |" in card
    assert outcome["served_recall"] == served_path["recall"]
    if outcome["accepted"]:
        assert registry.champion("current") == outcome["version"]


@pytest.mark.parametrize("problem", ["below the target"])
def test_a_failed_artifact_check_blocks_promotion(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, problem: str
) -> None:
    """The candidate passes the gate, but the refitted artifact misses students: no promotion, reason recorded."""
    import modeling.release as release_module
    from modeling.refit import ArtifactCheck

    def failing(bundle, frame, *, recall_target):  # type: ignore[no-untyped-def]
        return ArtifactCheck(passed=False, problems=[f"{bundle.variant}: in-sample recall 0.7 on 2024 {problem}"])

    monkeypatch.setattr(release_module, "check_artifact", failing)
    frame = make_feature_frame("current", n_per_year=200, seed=3)
    results = train_task.fn(settings, frame, "current")
    verdicts = gate_task.fn(settings, results, None, 0.5).data  # the state's data
    outcome = register_task.fn(settings, frame, results, verdicts, None, 0.5)
    registry = Registry.from_settings(settings)
    assert outcome["accepted"] is False and registry.champion("current") is None
    assert any(problem in reason for reason in outcome["reasons"])
    assert registry.metadata("current", outcome["version"])["gate"]["accepted"] is False


def test_the_flow_applies_the_roc_auc_floor_of_the_settings(settings: Settings) -> None:
    """PASSOS_GATE_MIN_ROC_AUC reaches every variant's verdict as the train flow gates it."""
    frame = make_feature_frame("current", n_per_year=200, seed=5)
    results = train_task.fn(settings, frame, "current")
    strict = settings.model_copy(update={"gate_min_roc_auc": 0.999})  # a ranking no candidate reaches
    verdicts = gate_task.fn(strict, results, None, 0.0).data  # the state's data
    assert set(verdicts) == set(results)
    for variant, verdict in verdicts.items():
        assert verdict.checks["min_roc_auc"]["limit"] == 0.999, variant
        assert not verdict.accepted and any(reason.startswith("roc_auc") for reason in verdict.reasons), variant
    relaxed = gate_task.fn(
        settings.model_copy(update={"gate_min_roc_auc": 0.0}), results, None, 0.0
    ).data  # the state's data
    assert all(verdict.checks["min_roc_auc"]["passed"] for verdict in relaxed.values())
    lifted = gate_task.fn(settings.model_copy(update={"gate_min_lift": 1000.0}), results, None, 0.0).data
    for variant, verdict in lifted.items():
        assert verdict.checks["min_lift"]["limit"] == 1000.0, variant
        assert not verdict.accepted and any(reason.startswith("lift") for reason in verdict.reasons), variant
