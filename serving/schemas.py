"""Request and response models of the API, built from the feature contract (one definition).

Every feature any task uses is an optional request field with its documented range; the
fields of the original example payload (``inde, iaa, ips, ipp, ipv, fase``) are always
accepted. Numbers must be JSON numbers (``"7.5"`` is refused), finite (``NaN`` and
``Infinity`` are refused), and unknown fields are refused with their name.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from annotated_types import Interval
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from features.featuresets import FEATURES, TASKS, FeatureSpec

BATCH_MAX = 1000
# Derived features are computed by the service; clients send what they derive from.
DERIVED = frozenset({"idade_menos_fase", "idade_ref", "fase_esperada", "atraso_esperado", "folga_proximo_ano"})

EXAMPLE: dict[str, Any] = {"inde": 7.5, "iaa": 8.0, "ips": 6.5, "ipp": 7.0, "ipv": 7.2, "fase": 3}
FULL_EXAMPLE: dict[str, Any] = {
    "task": "current",
    "fase": 3,
    "idade": 13,
    "genero": "F",
    "instituicao": "publica",
    "anos_no_programa": 2,
    "iaa": 8.0,
    "ieg": 7.5,
    "ips": 6.5,
    "ipp": 7.0,
    "ida": 5.5,
    "ipv": 7.2,
    "mat": 6.0,
    "por": 5.5,
    "prev_defasagem": -1,
}


def _specs() -> dict[str, FeatureSpec]:
    merged: dict[str, FeatureSpec] = {}
    for task in TASKS:
        for spec in FEATURES[task]:
            merged.setdefault(spec.name, spec)
    return merged


def _field(spec: FeatureSpec) -> tuple[Any, Any]:
    if spec.kind == "categorical":
        return (Literal[spec.categories] | None, Field(default=None, description=spec.description))
    return (
        float | None,
        Field(
            default=None,
            ge=spec.minimum,
            le=spec.maximum,
            strict=True,
            allow_inf_nan=False,
            description=f"{spec.description} (range {spec.minimum}..{spec.maximum})",
        ),
    )


def _number_not_text(value: Any) -> Any:
    """JSON numbers only (2024 or 2024.0); text and booleans are refused."""
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON number, not text or a boolean")
    return value


def _whole(low: int, high: int) -> Any:
    return Annotated[int, Interval(ge=low, le=high), BeforeValidator(_number_not_text)] | None


_fields: dict[str, Any] = {name: _field(spec) for name, spec in _specs().items() if name not in DERIVED}
_fields["ano_ingresso"] = (
    _whole(1990, 2100),
    Field(default=None, description="Year the student joined (derives anos_no_programa)"),
)
_fields["year"] = (
    _whole(1990, 2100),
    Field(default=None, description="Year of the data (with ano_ingresso)"),
)


def _iso_date_only(value: Any) -> Any:
    """Birth dates come as ISO strings; a number would silently become a 1970 date."""
    if value is not None and not isinstance(value, str | date):
        raise ValueError("must be an ISO date string such as 2012-06-17")
    return value


_fields["data_nasc"] = (
    Annotated[date, BeforeValidator(_iso_date_only)] | None,
    Field(
        default=None,
        description="Birth date (ISO, e.g. 2012-06-17); with year it gives the exact age on 31 March",
    ),
)
_fields["ano_nasc"] = (
    _whole(1950, 2100),
    Field(default=None, description="Birth year, when the date is not known"),
)
_fields["student_id"] = (
    str | None,
    Field(
        default=None,
        max_length=64,
        description="Optional student id (RA); only a salted hash is logged or traced, never the id itself",
    ),
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [dict(EXAMPLE), dict(FULL_EXAMPLE)]})


StudentFeatures: type[BaseModel] = create_model(
    "StudentFeatures", __base__=_Strict, __doc__="One student's features; every field is optional.", **_fields
)

_TaskName = Literal["current", "next_year"]
PredictRequest: type[BaseModel] = create_model(
    "PredictRequest",
    __base__=StudentFeatures,
    __doc__="One student, and which model to ask.",
    task=(_TaskName, Field(default="current", description="current (default) or next_year")),
)


class BatchRequest(BaseModel):
    """Many students, one task."""

    model_config = ConfigDict(extra="forbid")
    task: Literal["current", "next_year"] = Field(default="current")
    students: list[StudentFeatures] = Field(min_length=1, max_length=BATCH_MAX)  # type: ignore[valid-type]
    include_reasons: bool = Field(
        default=True,
        strict=True,
        description="Per-student reasons (exact tree SHAP: about 0.1 ms per student); false is faster",
    )


class Reason(BaseModel):
    """A feature pushing the risk up."""

    feature: str
    value: float | str | None
    contribution: float = Field(description="Push on the model's raw score (log-odds for LightGBM)")


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
    )
    risk_label: Literal["high", "low", "unknown"] = Field(
        description=(
            "high: risk_score >= threshold, flag the student; low: below it; unknown: the fields sent are too "
            "few for any validated model (see needed), so no answer is given"
        )
    )
    task: str = Field(description="current (behind this year) or next_year (behind next year)")
    model_version: str = Field(description="The champion version that answered")
    variant: str | None = Field(
        description="Which variant answered: full, core or example (a model trained for that field set)"
    )
    variant_recall: float | None = Field(description="That variant's recall on its out-of-time test year")
    variant_precision: float | None = Field(description="That variant's precision on its out-of-time test year")
    threshold: float | None = Field(description="The variant's alert threshold on risk_score")
    percentile: float | None = Field(
        description="Share of the reference year's students (0-100) whose score is at or below this one"
    )
    reasons: list[Reason] = Field(description="Features that pushed the risk up, largest first; only fields sent")
    missing: list[str] = Field(
        description="Features the answering variant uses that were not sent (treated as unknown)"
    )
    needed: list[str] = Field(
        description="When risk_label is unknown: the fields to add for the smallest validated variant"
    )
    known_importance: float = Field(
        ge=0.0,
        le=1.0,
        description="Share of the model's global importance carried by the features sent: low means a weak answer",
    )
    ignored: list[str] = Field(description="Fields sent that this task's model does not use")


class BatchPrediction(BaseModel):
    """The answers, in the order of the students sent."""

    task: str
    model_version: str
    predictions: list[Prediction]


class ErrorDetail(BaseModel):
    """One thing wrong with a request."""

    field: str
    rule: str
    message: str


class ErrorResponse(BaseModel):
    """What a 4xx answers."""

    detail: str
    errors: list[ErrorDetail] = []
