"""The recall gate: absolute minimums and no regression against the champion."""

from __future__ import annotations

import json
import math

import pytest

from modeling.gate import Verdict, evaluate_gate

LIMITS = {"min_recall": 0.90, "min_precision": 0.50, "tolerance": 0.02}


def metrics(recall: float = 0.93, precision: float = 0.60, roc_auc: float = 0.88, f2: float = 0.85) -> dict:
    return {"recall": recall, "precision": precision, "roc_auc": roc_auc, "f2": f2}


def test_good_candidate_without_champion_is_accepted() -> None:
    verdict = evaluate_gate(metrics(), None, **LIMITS)
    assert verdict.accepted is True
    assert verdict.reasons == []
    assert set(verdict.checks) == {"min_recall", "min_precision"}
    assert verdict.checks["min_recall"] == {
        "metric": "recall",
        "value": 0.93,
        "limit": 0.90,
        "passed": True,
        "message": "recall 0.930 >= minimum 0.900",
    }


def test_low_recall_is_rejected_with_a_sentence() -> None:
    verdict = evaluate_gate(metrics(recall=0.873), None, **LIMITS)
    assert verdict.accepted is False
    assert verdict.reasons == ["recall 0.873 < minimum 0.900"]
    assert verdict.checks["min_recall"]["passed"] is False
    assert verdict.checks["min_precision"]["passed"] is True


def test_low_precision_is_rejected() -> None:
    verdict = evaluate_gate(metrics(precision=0.41), None, **LIMITS)
    assert verdict.reasons == ["precision 0.410 < minimum 0.500"]


def test_every_failure_is_reported() -> None:
    verdict = evaluate_gate(
        metrics(recall=0.80, precision=0.30, roc_auc=0.70), metrics(recall=0.95, roc_auc=0.90), **LIMITS
    )
    assert verdict.accepted is False
    assert len(verdict.reasons) == 4
    assert all(not check["passed"] for check in verdict.checks.values())


def test_recall_exactly_at_the_limits_passes() -> None:
    # 0.92 - 0.02 is 0.9000000000000001 in floating point; 0.90 must still pass
    verdict = evaluate_gate(metrics(recall=0.90), metrics(recall=0.92), **LIMITS)
    assert verdict.accepted is True, verdict.reasons


def test_worse_than_champion_beyond_tolerance_is_rejected() -> None:
    verdict = evaluate_gate(metrics(recall=0.91), metrics(recall=0.96, roc_auc=0.88), **LIMITS)
    assert verdict.accepted is False
    assert verdict.reasons == [
        "recall 0.910 is worse than the champion's 0.960 beyond tolerance 0.020 (0.910 < limit 0.940)"
    ]
    check = verdict.checks["recall_vs_champion"]
    assert check["champion"] == 0.96 and check["tolerance"] == 0.02
    assert check["limit"] == pytest.approx(0.94)
    assert verdict.checks["roc_auc_vs_champion"]["passed"] is True


def test_lower_auc_than_champion_beyond_tolerance_is_rejected() -> None:
    verdict = evaluate_gate(metrics(roc_auc=0.80), metrics(roc_auc=0.85), **LIMITS)
    assert verdict.accepted is False
    assert len(verdict.reasons) == 1
    assert verdict.reasons[0].startswith("roc_auc 0.800 is worse than the champion's 0.850 beyond tolerance")


def test_small_drop_within_tolerance_is_accepted() -> None:
    verdict = evaluate_gate(metrics(recall=0.93, roc_auc=0.87), metrics(recall=0.945, roc_auc=0.885), **LIMITS)
    assert verdict.accepted is True
    assert verdict.checks["recall_vs_champion"]["message"] == (
        "recall 0.930 >= champion's 0.945 - tolerance 0.020 (0.925)"
    )


def test_close_values_are_shown_with_enough_digits() -> None:
    verdict = evaluate_gate(metrics(recall=0.89996), None, **LIMITS)
    assert verdict.reasons == ["recall 0.899960 < minimum 0.900000"]


def test_nan_metrics() -> None:
    verdict = evaluate_gate(metrics(recall=math.nan), metrics(roc_auc=math.nan), **LIMITS)
    assert verdict.accepted is False
    assert verdict.reasons == [
        "recall is not a number (nan); minimum 0.900",
        "recall is not a number (nan); champion has 0.930",
    ]
    # a champion AUC that is not a number gives nothing to compare with
    assert verdict.checks["roc_auc_vs_champion"]["passed"] is True
    assert verdict.checks["roc_auc_vs_champion"]["limit"] is None

    verdict = evaluate_gate(metrics(roc_auc=None), metrics(), **LIMITS)  # type: ignore[arg-type]
    assert verdict.reasons == ["roc_auc is not a number (None); champion has 0.880"]


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="candidate metrics lack roc_auc"):
        evaluate_gate({"recall": 0.9, "precision": 0.9}, None, **LIMITS)
    with pytest.raises(ValueError, match="champion metrics lack recall"):
        evaluate_gate(metrics(), {"roc_auc": 0.9}, **LIMITS)
    with pytest.raises(ValueError, match="min_recall"):
        evaluate_gate(metrics(), None, min_recall=1.5, min_precision=0.5, tolerance=0.02)


def test_as_dict_is_json_and_matches_the_registry_contract() -> None:
    verdict = evaluate_gate(metrics(recall=0.5), metrics(), **LIMITS)
    data = json.loads(json.dumps(verdict.as_dict(), allow_nan=False))
    assert data["accepted"] is False  # the registry refuses to promote on exactly this key
    assert data["reasons"] == verdict.reasons
    assert set(data["checks"]) == {"min_recall", "min_precision", "recall_vs_champion", "roc_auc_vs_champion"}
    assert Verdict(**data) == verdict


def test_a_weaker_protocol_is_held_for_a_person() -> None:
    from modeling.gate import hold_reason

    champion = {"protocol": "out_of_time", "test_year": 2024}
    held = hold_reason({"protocol": "grouped_cv", "test_year": None}, champion)
    assert held is not None and "weaker protocol" in held and "passos models promote" in held
    older = hold_reason({"protocol": "out_of_time", "test_year": 2023}, champion)
    assert older is not None and "older year" in older
    assert hold_reason({"protocol": "out_of_time", "test_year": 2024}, champion) is None
    assert hold_reason({"protocol": "out_of_time", "test_year": 2025}, champion) is None
    assert hold_reason({"protocol": "out_of_time", "test_year": 2024}, {"protocol": "grouped_cv"}) is None
    assert hold_reason({"protocol": "grouped_cv"}, None) is None
    verdict = Verdict(accepted=True, held=True, held_reason=held)
    assert verdict.auto_promote is False and Verdict(accepted=True).auto_promote is True
    assert verdict.as_dict()["held"] is True


def test_a_ranking_near_chance_is_rejected_when_asked() -> None:
    verdict = evaluate_gate(metrics(roc_auc=0.30), None, **LIMITS, min_roc_auc=0.70)
    assert verdict.accepted is False and verdict.reasons == ["roc_auc 0.300 < minimum 0.700"]
    assert "min_roc_auc" not in evaluate_gate(metrics(roc_auc=0.30), None, **LIMITS).checks


def test_a_precision_barely_above_the_base_rate_is_turned_away() -> None:
    """A model that flags 91 % of students at precision .507 where .46 are behind says little."""
    barely = metrics(recall=0.97, precision=0.507, roc_auc=0.702) | {"prevalence": 0.46}
    verdict = evaluate_gate(barely, None, **LIMITS, min_roc_auc=0.70, min_lift=1.2)
    assert verdict.accepted is False
    assert verdict.checks["min_lift"]["passed"] is False
    assert verdict.checks["min_lift"]["value"] == pytest.approx(0.507 / 0.46)
    assert verdict.reasons == ["lift 1.102 < minimum 1.200 (precision 0.507 over a base rate of 0.460)"]
    useful = evaluate_gate(metrics(precision=0.60) | {"prevalence": 0.40}, None, **LIMITS, min_lift=1.2)
    assert useful.accepted is True and useful.checks["min_lift"]["value"] == pytest.approx(1.5)


def test_the_lift_floor_needs_the_base_rate_and_a_limit_of_at_least_one() -> None:
    with pytest.raises(ValueError, match="prevalence"):
        evaluate_gate(metrics(), None, **LIMITS, min_lift=1.2)
    with pytest.raises(ValueError, match="min_lift"):
        evaluate_gate(metrics() | {"prevalence": 0.4}, None, **LIMITS, min_lift=0.9)
    unknown = evaluate_gate(metrics() | {"prevalence": 0.0}, None, **LIMITS, min_lift=1.2)
    assert unknown.accepted is False and unknown.checks["min_lift"]["value"] is None
