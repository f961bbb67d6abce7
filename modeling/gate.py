"""The recall gate: the rule that decides whether a candidate model may become champion.

A candidate passes only if it finds enough of the students at risk (recall), does not flood
the staff with false alarms (precision), ranks better than chance by a margin (ROC AUC, and the
lift of its precision over the test year's base rate: a model that flags nearly everyone has
the base rate for precision, whatever its recall), and, when a champion exists, is not worse than the
champion *on the same test data* beyond a small tolerance (recall and ROC AUC).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

# Float slack for the comparisons, so that e.g. 0.92 - 0.02 (= 0.9000000000000001) does not
# reject a recall of exactly 0.90.
_EPS = 1e-12


@dataclass
class Verdict:
    """The gate's decision.

    Attributes:
        accepted: True when every check passed.
        reasons: One human sentence per failed check (empty when accepted).
        held: True when the candidate passed but was judged by a weaker protocol than the
            champion: only a person (``passos models promote``) may make it champion.
        held_reason: why it was held.
        checks: Every check by name, each ``{"metric", "value", "limit", "passed", "message"}``
            (champion checks also carry ``champion`` and ``tolerance``).
        flags: One sentence per one-line rule the candidate does not beat on the test year
            (``modeling.baselines``). A flag does not reject: it tells the reader that a rule
            from the sheet does as well, which is what a person should know before relying on it.
    """

    accepted: bool
    reasons: list[str] = field(default_factory=list)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    held: bool = False
    held_reason: str | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def auto_promote(self) -> bool:
        """Whether the training run may make this candidate champion by itself."""
        return self.accepted and not self.held

    def as_dict(self) -> dict[str, Any]:
        """The verdict as plain JSON-ready data (stored as ``metadata["gate"]``)."""
        return asdict(self)


def evaluate_gate(
    candidate: dict[str, float],
    champion_on_same_test: dict[str, float] | None,
    *,
    min_recall: float,
    min_precision: float,
    tolerance: float,
    min_roc_auc: float | None = None,
    min_lift: float | None = None,
) -> Verdict:
    """Decide whether a candidate model is good enough to be promoted.

    Args:
        candidate: The candidate's test metrics; needs ``recall``, ``precision``, ``roc_auc``.
        champion_on_same_test: The current champion's metrics on the *same* test rows, or None
            when there is no champion (then only the absolute minimums apply).
        min_recall: Lowest acceptable recall.
        min_precision: Lowest acceptable precision.
        tolerance: How far below the champion's recall and ROC AUC the candidate may fall.
        min_roc_auc: Lowest acceptable ROC AUC (None: not checked). A model whose ranking is
            near chance can reach any recall by flagging nearly everyone.
        min_lift: Lowest acceptable lift, ``precision / prevalence`` (the candidate's precision over
            the share of students behind in the test year; None: not checked). Needs the
            candidate's ``prevalence``. A lift near 1 means its flag tells a coordinator little
            more than the base rate does.

    Returns:
        The verdict, with every check and a sentence per failure.

    Raises:
        ValueError: A limit outside [0, 1], or a metric dict without a required key.
    """
    limits = [("min_recall", min_recall), ("min_precision", min_precision), ("tolerance", tolerance)]
    if min_roc_auc is not None:
        limits.append(("min_roc_auc", min_roc_auc))
    for name, limit in limits:
        if not 0.0 <= limit <= 1.0:
            raise ValueError(f"{name} must be within [0, 1], got {limit!r}")
    if min_lift is not None and not min_lift >= 1.0:
        raise ValueError(f"min_lift must be at least 1 (the base rate's own lift), got {min_lift!r}")
    _require(candidate, ("recall", "precision", "roc_auc"), "candidate")

    checks: dict[str, dict[str, Any]] = {
        "min_recall": _minimum_check("recall", candidate["recall"], min_recall),
        "min_precision": _minimum_check("precision", candidate["precision"], min_precision),
    }
    if min_roc_auc is not None:
        checks["min_roc_auc"] = _minimum_check("roc_auc", candidate["roc_auc"], min_roc_auc)
    if min_lift is not None:
        _require(candidate, ("prevalence",), "candidate")
        checks["min_lift"] = _lift_check(candidate["precision"], candidate["prevalence"], min_lift)
    if champion_on_same_test is not None:
        _require(champion_on_same_test, ("recall", "roc_auc"), "champion")
        for metric in ("recall", "roc_auc"):
            checks[f"{metric}_vs_champion"] = _champion_check(
                metric, candidate[metric], champion_on_same_test[metric], tolerance
            )
    reasons = [check["message"] for check in checks.values() if not check["passed"]]
    return Verdict(accepted=not reasons, reasons=reasons, checks=checks)


PROTOCOL_STRENGTH = {"out_of_time": 2, "grouped_cv": 1}


def hold_reason(candidate: dict[str, Any], champion: dict[str, Any] | None) -> str | None:
    """Why a candidate may not replace the champion automatically (None when it may).

    Both dicts carry ``protocol`` and ``test_year`` (the champion's as evaluated). A candidate
    judged by a weaker protocol (cross-validation within a year against an out-of-time test),
    or tested on an older year than the champion, is not comparable like with like: its
    figures cannot show it is at least as good, so a person decides.
    """
    if champion is None:
        return None
    mine = PROTOCOL_STRENGTH.get(str(candidate.get("protocol")), 0)
    theirs = PROTOCOL_STRENGTH.get(str(champion.get("protocol")), 0)
    if mine < theirs:
        return (
            f"judged by {candidate.get('protocol')}, a weaker protocol than the champion's "
            f"{champion.get('protocol')} (test year {champion.get('test_year')}); its figures cannot show it is "
            "as good, so it is kept for review: `passos models promote` if a person decides it should serve"
        )
    mine_year, their_year = candidate.get("test_year"), champion.get("test_year")
    if mine == theirs and mine_year is not None and their_year is not None and int(mine_year) < int(their_year):
        return (
            f"tested on {mine_year}, an older year than the champion's test year {their_year}; "
            "kept for review: `passos models promote` if a person decides it should serve"
        )
    return None


def _require(metrics: dict[str, float], keys: tuple[str, ...], who: str) -> None:
    missing = [key for key in keys if key not in metrics]
    if missing:
        raise ValueError(f"{who} metrics lack {', '.join(missing)} (have: {', '.join(sorted(metrics))})")


def _as_number(value: Any) -> float | None:
    """The metric as a float, or None when it is missing or not a finite number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _pair(value: float, limit: float) -> tuple[str, str]:
    """Value and limit as text, with enough digits that a failing pair never reads as equal."""
    for digits in (3, 6, 12):
        shown = (f"{value:.{digits}f}", f"{limit:.{digits}f}")
        if shown[0] != shown[1]:
            return shown
    return f"{value!r}", f"{limit!r}"


def _minimum_check(metric: str, raw: Any, limit: float) -> dict[str, Any]:
    value = _as_number(raw)
    check: dict[str, Any] = {"metric": metric, "value": value, "limit": limit}
    if value is None:
        check.update(passed=False, message=f"{metric} is not a number ({raw!r}); minimum {limit:.3f}")
        return check
    passed = value >= limit - _EPS
    shown, shown_limit = _pair(value, limit)
    relation = ">=" if passed else "<"
    check.update(passed=passed, message=f"{metric} {shown} {relation} minimum {shown_limit}")
    return check


def _lift_check(raw_precision: Any, raw_prevalence: Any, limit: float) -> dict[str, Any]:
    precision, prevalence = _as_number(raw_precision), _as_number(raw_prevalence)
    lift = precision / prevalence if precision is not None and prevalence else None
    check = _minimum_check("lift", lift, limit)
    check["prevalence"] = prevalence
    if lift is not None:
        check["message"] += f" (precision {precision:.3f} over a base rate of {prevalence:.3f})"
    return check


def _champion_check(metric: str, raw: Any, raw_champion: Any, tolerance: float) -> dict[str, Any]:
    value = _as_number(raw)
    champion = _as_number(raw_champion)
    check: dict[str, Any] = {"metric": metric, "value": value, "champion": champion, "tolerance": tolerance}
    if champion is None:
        # A champion metric that is not a number (e.g. AUC on a one-class test set) gives
        # nothing to compare with; the candidate is not blamed for it.
        check.update(
            limit=None,
            passed=True,
            message=f"champion {metric} is not a number ({raw_champion!r}); comparison skipped",
        )
        return check
    limit = champion - tolerance
    check["limit"] = limit
    if value is None:
        check.update(passed=False, message=f"{metric} is not a number ({raw!r}); champion has {champion:.3f}")
        return check
    passed = value >= limit - _EPS
    shown, shown_limit = _pair(value, limit)
    if passed:
        message = f"{metric} {shown} >= champion's {champion:.3f} - tolerance {tolerance:.3f} ({shown_limit})"
    else:
        message = (
            f"{metric} {shown} is worse than the champion's {champion:.3f} beyond tolerance "
            f"{tolerance:.3f} ({shown} < limit {shown_limit})"
        )
    check.update(passed=passed, message=message)
    return check
