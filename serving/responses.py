"""Response models of the API: a prediction, a batch of them, and the shape of every 4xx."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from serving.schemas import MAX_REPORTED_ERRORS, did_you_mean


class Reason(BaseModel):
    """A feature pushing this student's risk up."""

    feature: str = Field(description="The model feature (see GET /model for its description)", examples=["ida"])
    value: float | str | None = Field(
        description="The value the model saw: the number sent or derived, the category, or null when not sent",
        examples=[5.5],
    )
    contribution: float = Field(
        description="Push on the model's raw score (log-odds for LightGBM, exact tree SHAP); always > 0 here",
        examples=[0.412],
    )


class Upgrade(BaseModel):
    """What would let the best variant answer instead of the lesser one (or instead of "unknown")."""

    variant: str = Field(description="The variant that would answer: full, the richest", examples=["full"])
    add: list[str] = Field(
        description="Request fields to add (a derived feature is named by the fields it comes from)",
        examples=[["defasagem", "ian"]],
    )
    recall: float | None = Field(description="That variant's recall on its out-of-time test year", examples=[0.844])
    precision: float | None = Field(
        description="That variant's precision on its out-of-time test year", examples=[0.66]
    )


class Prediction(BaseModel):
    """The answer for one student."""

    risk_score: float | None = Field(
        ge=0.0,
        le=1.0,
        description=(
            "Probability of being behind, from the answering variant's calibration (Platt scaling on the "
            "served members' own out-of-fold scores; its reliability table is in /model and the model card). "
            "null when risk_label is unknown"
        ),
        examples=[0.234],
    )
    risk_label: Literal["high", "low", "unknown"] = Field(
        description=(
            "high: risk_score >= threshold (the cut of the student's segment), flag the student; low: below it; "
            "unknown: the fields sent are too "
            "few for any validated model (see needed), so no answer is given"
        ),
        examples=["low"],
    )
    task: str = Field(description="current (behind this year) or next_year (behind next year)", examples=["current"])
    model_version: str = Field(
        description="The champion version that answered (GET /model describes it; hot reload may change it)",
        examples=["v20261126T145644Z-3e32bf99"],
    )
    variant: str | None = Field(
        description="Which variant answered: full, core or example (a model trained for that field set)",
        examples=["full"],
    )
    variant_recall: float | None = Field(
        description="That variant's recall on its out-of-time test year", examples=[0.9]
    )
    variant_precision: float | None = Field(
        description="That variant's precision on its out-of-time test year", examples=[0.61]
    )
    threshold: float | None = Field(
        description=(
            "The cut risk_label applied: the answering variant's operating point for the student's segment "
            "(see segment), or its single threshold when segment is null"
        ),
        examples=[0.2408],
    )
    segment: Literal["behind", "on_track"] | None = Field(
        default=None,
        description=(
            "Whose operating point labelled the student: behind (defasagem < 0) or on_track (defasagem >= 0), "
            "each with the cut chosen for it in training; null when defasagem is unknown or the model has no "
            "per-segment cuts (the variant's single threshold applied) or risk_label is unknown"
        ),
        examples=["on_track"],
    )
    percentile: float | None = Field(
        description="Share of the reference year's students (0-100) whose score is at or below this one",
        examples=[71.5],
    )
    reasons: list[Reason] = Field(
        description="Features that pushed the risk up, largest first; only fields sent; empty when a batch "
        "asked include_reasons=false",
        examples=[[{"feature": "ida", "value": 5.5, "contribution": 0.412}]],
    )
    missing: list[str] = Field(
        description=(
            "Request fields the answering variant uses that were not sent (treated as unknown); a derived "
            "feature is named by the fields it comes from"
        ),
        examples=[["mat", "por", "ing"]],
    )
    needed: list[str] = Field(
        description="When risk_label is unknown: the request fields to add for the smallest validated variant",
        examples=[[]],
    )
    upgrade: Upgrade | None = Field(
        description=(
            "When a lesser variant answered (or none did): the fields that would let the best variant answer, "
            "with its out-of-time figures; null when the best variant answered"
        ),
        examples=[None],
    )
    known_importance: float = Field(
        ge=0.0,
        le=1.0,
        description="Share of the model's global importance carried by the features sent: low means a weak answer",
        examples=[0.94],
    )
    ignored: list[str] = Field(
        description="Fields sent that this task's model does not use (e.g. inde for current: leakage policy)",
        examples=[["inde"]],
    )


class BatchPrediction(BaseModel):
    """The answers, in the order of the students sent."""

    task: str = Field(description="The model that answered every student", examples=["current"])
    model_version: str = Field(
        description="Registry version of that model (one model for the whole batch)",
        examples=["v20261126T145644Z-3e32bf99"],
    )
    predictions: list[Prediction] = Field(description="One answer per student, in the order sent")


class ErrorDetail(BaseModel):
    """One thing wrong with a request."""

    field: str = Field(
        description="Dotted path of the bad field (`students.0.iaa` in a batch), or `body`", examples=["fse"]
    )
    rule: str = Field(description="The rule it broke (pydantic's error type)", examples=["extra_forbidden"])
    message: str = Field(
        description="What is wrong, in words; for an unknown field, the closest known one",
        examples=["unknown field 'fse'; did you mean 'fase'?"],
    )


class ErrorResponse(BaseModel):
    """What a 4xx answers."""

    detail: str = Field(description="Summary of the problem", examples=["invalid request"])
    errors: list[ErrorDetail] = Field(default=[], description="Each problem found (422); empty for other codes")


def error_body(detail: str, errors: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """An :class:`ErrorResponse` as the JSON a 4xx sends."""
    return {"detail": detail, "errors": errors or []}


def error_entries(found: Sequence[Mapping[str, Any]], total: int | None = None) -> list[dict[str, str]]:
    """pydantic's errors as a 422 lists them: the field, the rule and a readable message.

    At most ``MAX_REPORTED_ERRORS`` entries, then one saying how many more of the ``total``
    (default: as many as found) were not listed.
    """
    entries = []
    for item in found[:MAX_REPORTED_ERRORS]:
        location = [str(p) for p in item.get("loc", ()) if p != "body"]
        if item.get("type") == "json_invalid":
            location = []  # the location is a character offset, not a field
        names = (item.get("ctx") or {}).get("fields")
        if isinstance(names, list):  # a rule across fields (impossible combinations) names each one
            where = ".".join(location)
            named = ", ".join(f"{where}.{name}" if where else str(name) for name in names)
        else:
            named = ".".join(location) or "body"
        message = str(item.get("msg", "invalid value"))
        if item.get("type") == "extra_forbidden" and location:
            hint = did_you_mean(location[-1])
            message = f"unknown field {location[-1]!r}" + (f"; did you mean {hint!r}?" if hint else "")
        entries.append({"field": named, "rule": str(item.get("type", "invalid")), "message": message})
    more = (len(found) if total is None else total) - min(len(found), MAX_REPORTED_ERRORS)
    if more > 0:
        entries.append({"field": "body", "rule": "too_many_errors", "message": f"{more} more errors not listed"})
    return entries


class InvalidRequest(Exception):
    """A request found invalid away from FastAPI's own validation, with its 422 entries built."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(f"invalid request: {len(errors)} errors")
        self.errors = errors


def unreadable_message(cause: BaseException) -> str:
    """Why a body could not be read as JSON: bytes that are not UTF-8, or nesting past the parser's depth."""
    if isinstance(cause, UnicodeDecodeError):
        return f"body is not UTF-8: byte 0x{cause.object[cause.start]:02x} at offset {cause.start}"
    if isinstance(cause, RecursionError):
        return "JSON nested too deep"
    return "body is not readable JSON"


def unreadable_body(cause: BaseException) -> dict[str, Any]:
    """The 422 for a body that is not JSON at all, as for malformed JSON: the rule ``json_invalid`` on ``body``."""
    return error_body(
        "invalid request", [{"field": "body", "rule": "json_invalid", "message": unreadable_message(cause)}]
    )
