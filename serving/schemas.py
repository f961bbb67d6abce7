"""Request and response models of the API, built from the feature contract (one definition).

Every feature any task uses is an optional request field with its documented range; the
fields of the original example payload (``inde, iaa, ips, ipp, ipv, fase``) are always
accepted. Numbers must be JSON numbers (``"7.5"`` is refused), finite (``NaN`` and
``Infinity`` are refused), and unknown fields are refused with their name and, when one is
close, a "did you mean" (:func:`did_you_mean`).

The raw PEDE spellings that ingestion accepts are accepted here by the same functions of
``features/harmonise.py`` (one set of rules): ``fase`` as ``"ALFA"``, ``"FASE 3"`` or ``"7E"``;
``genero`` and ``instituicao`` as the labels of ``features/labels.yaml`` (``"Feminino"``,
``"Menina"``, ``"Escola Pública"``; any case, with or without accents); 0-10 indicators and
grades up to ``10 + INDICATOR_TOLERANCE`` (the sheets' rounding noise, e.g. IAA 10.002) are
clipped to 10.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal

from annotated_types import Interval
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, create_model, model_validator
from pydantic_core import PydanticCustomError

from features.featuresets import DERIVED, FEATURES, TASKS, FeatureSpec
from features.harmonise import (
    INDICATOR_TOLERANCE,
    ValueProblem,
    clip_rounding_noise,
    column_map,
    label_spellings,
    parse_fase,
    parse_label,
)

BATCH_MAX = 1000

EXAMPLE: dict[str, Any] = {"inde": 7.5, "iaa": 8.0, "ips": 6.5, "ipp": 7.0, "ipv": 7.2, "fase": 3}
# A complete student per task: every field the task's full variant reads, so the best model answers.
FULL_EXAMPLE: dict[str, Any] = {
    "task": "current",
    "year": 2024,
    "fase": 3,
    "idade": 15,
    "data_nasc": "2009-05-20",
    "genero": "Feminino",
    "instituicao": "Pública",
    "ano_ingresso": 2021,
    "iaa": 8.0,
    "ieg": 7.5,
    "ips": 6.5,
    "ipp": 7.0,
    "ida": 5.5,
    "ipv": 7.2,
    "mat": 6.0,
    "por": 5.5,
    "ing": 6.5,
    "prev_defasagem": -1,
    "prev_inde": 6.8,
    "prev_ida": 5.0,
}
FULL_EXAMPLE_NEXT_YEAR: dict[str, Any] = FULL_EXAMPLE | {"task": "next_year", "defasagem": -1, "ian": 5.0, "inde": 6.9}
# /docs and /openapi.json: the complete examples first (answered by the full variant), then the
# original design's six fields (answered by a lesser variant, or "unknown", with what to add).
PREDICT_EXAMPLES: dict[str, dict[str, Any]] = {
    "current": {"summary": "current: a complete student (answered by full)", "value": FULL_EXAMPLE},
    "next_year": {"summary": "next_year: a complete student (answered by full)", "value": FULL_EXAMPLE_NEXT_YEAR},
    "six_fields": {
        "summary": "the original six fields (a lesser variant or unknown, with what to add)",
        "value": EXAMPLE,
    },
}


def _specs() -> dict[str, FeatureSpec]:
    merged: dict[str, FeatureSpec] = {}
    for task in TASKS:
        for spec in FEATURES[task]:
            merged.setdefault(spec.name, spec)
    return merged


FASE_SPELLINGS = ("ALFA", "FASE 3", "7E")
# The text spellings of fase the schema publishes (a subset of what parse_fase reads: levels 0-9 only).
FASE_PATTERN = r"^ *([Aa][Ll][Ff][Aa]|([Ff][Aa][Ss][Ee] *)?[0-9](\.0)? *[A-Za-z]?) *$"


def _clip_noise(value: float | None) -> float | None:
    """10.002 → 10, after the range check allowed up to ``10 + INDICATOR_TOLERANCE`` (as ingestion clips it)."""
    return None if value is None else clip_rounding_noise(value)


def _fase_spelling(value: Any) -> Any:
    """``"ALFA"`` → 0, ``"FASE 3"`` → 3, ``"7E"`` → 7 (ingestion's :func:`parse_fase`); numbers unchanged."""
    if not isinstance(value, str):
        return value
    try:
        # re.search, as JSON Schema validators apply "pattern": the published schema is the exact rule.
        if re.search(FASE_PATTERN, value):
            return parse_fase(value)
        raise ValueProblem(value)
    except ValueProblem:
        raise PydanticCustomError(
            "fase_spelling",
            "fase must be a number 0-9 or a PEDE spelling such as {examples}; got '{value}'",
            {"examples": ", ".join(FASE_SPELLINGS), "value": value[:40]},
        ) from None


# The letters a PEDE label may carry with an accent, and the other ways they may be written.
_LETTER_VARIANTS = {"a": "áàâãä", "e": "éèêë", "i": "íìîï", "o": "óòôõöº", "u": "úùûü", "c": "ç"}


def _letter_class(char: str) -> str:
    if not char.isalpha():  # escape only ECMA-262's syntax characters: "\\-" is invalid there
        return "\\" + char if char in "^$\\.*+?()[]{}|/" else char
    variants = char.lower() + char.upper() + _LETTER_VARIANTS.get(char.lower(), "")
    variants += "".join(v.upper() for v in _LETTER_VARIANTS.get(char.lower(), "") if v != "º")
    return "[" + "".join(dict.fromkeys(variants)) + "]"


def label_pattern(group: str) -> str:
    """The published rule for the PEDE labels of ``group``: any case, accents optional, runs of spaces.

    A JSON Schema pattern (ECMA-262, no flags), so a client generated from ``/openapi.json``
    accepts exactly what the service does: the request validator applies the same pattern
    before ingestion's :func:`features.harmonise.parse_label` reads the label (which, on a
    match, always finds it: the accents fold away and the spaces collapse).
    """
    words = [
        " +".join("".join(_letter_class(c) for c in word) for word in label.split()) for label in label_spellings(group)
    ]
    return "^ *(" + "|".join(words) + ") *$"


def _label_spelling(spec: FeatureSpec) -> Callable[[Any], Any]:
    pattern = re.compile(label_pattern(spec.name))

    def convert(value: Any) -> Any:
        if not isinstance(value, str) or value in spec.categories:
            return value
        try:
            if not pattern.fullmatch(value):  # the published rule is the exact rule
                raise ValueProblem(value)
            code = parse_label(spec.name, value)
            if code is None:  # a blank string: an empty cell in a sheet, but not a spelling of anything here
                raise ValueProblem(value)
            return code
        except ValueProblem:
            raise PydanticCustomError(
                "literal_error",
                "Input should be one of {codes}, or a PEDE label ({labels}; any case, accents optional)",
                {"codes": ", ".join(spec.categories), "labels": ", ".join(label_spellings(spec.name))},
            ) from None

    return convert


def _fase_text_branch(examples: list[str]) -> Callable[[dict[str, Any]], None]:
    """Publish that a numeric field also takes the PEDE text spellings (its validator converts them)."""

    def extra(schema: dict[str, Any]) -> None:
        schema["anyOf"].insert(1, {"type": "string", "pattern": FASE_PATTERN, "examples": examples})

    return extra


def _label_branch(group: str) -> Callable[[dict[str, Any]], None]:
    """Publish that a categorical field also takes the PEDE labels (its validator converts them)."""

    def extra(schema: dict[str, Any]) -> None:
        examples = [label.title() for label in label_spellings(group)][:3]
        schema["anyOf"].insert(1, {"type": "string", "pattern": label_pattern(group), "examples": examples})

    return extra


def _field(spec: FeatureSpec) -> tuple[Any, Any]:
    if spec.kind == "categorical":
        labels = ", ".join(label_spellings(spec.name))
        return (
            Annotated[Literal[spec.categories] | None, BeforeValidator(_label_spelling(spec))],
            Field(
                default=None,
                description=(
                    f"{spec.description}: {', '.join(spec.categories)}, or a PEDE label ({labels}; any case, "
                    "accents optional)"
                ),
                examples=[spec.categories[0]],
                json_schema_extra=_label_branch(spec.name),
            ),
        )
    description = f"{spec.description} (range {spec.minimum}..{spec.maximum})"
    validator: Any = None
    extra: Any = None
    maximum = spec.maximum
    if spec.name == "fase":
        validator = BeforeValidator(_fase_spelling)
        description += "; or a PEDE spelling such as " + ", ".join(FASE_SPELLINGS)
        extra = _fase_text_branch(list(FASE_SPELLINGS))
    elif (spec.minimum, spec.maximum) == (0.0, 10.0):
        validator = AfterValidator(_clip_noise)
        maximum = 10.0 + INDICATOR_TOLERANCE  # the same bound as harmonise.clip_rounding_noise
        description += f"; above 10 up to {maximum:g} (rounding noise in the sheets) is clipped to 10"
    return (
        Annotated[float | None, validator] if validator else float | None,
        Field(
            default=None,
            ge=spec.minimum,
            le=maximum,
            strict=True,
            allow_inf_nan=False,
            description=description,
            json_schema_extra=extra,
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


def _impossible(fields: list[str], message: str) -> PydanticCustomError:
    return PydanticCustomError("impossible_combination", f"{' and '.join(fields)}: {message}", {"fields": fields})


def check_combinations(values: dict[str, Any]) -> None:
    """Refuse fields that cannot all be true of one student (each error names the fields).

    A birth after the year predicted for, a birth date and a birth year that disagree, an age more
    than a year away from what the birth date gives for that year (PEDE records the age during the
    year, so ``year - birth year`` minus 2 up to plus 1 is accepted), joining the programme after
    the year or before birth.
    """
    year, age, joined = values.get("year"), values.get("idade"), values.get("ano_ingresso")
    born_date, born_year = values.get("data_nasc"), values.get("ano_nasc")
    if born_date is not None and born_year is not None and born_date.year != born_year:
        raise _impossible(["data_nasc", "ano_nasc"], f"birth date {born_date} is not in the birth year {born_year}")
    birth_field = "data_nasc" if born_date is not None else "ano_nasc"
    birth = born_date.year if born_date is not None else born_year
    this_year = date.today().year
    if birth is not None and year is None and birth > this_year:  # with a year, the next check names both
        raise _impossible([birth_field], f"born in {birth}, after the current year {this_year}")
    if birth is not None and year is not None and birth > year:
        raise _impossible([birth_field, "year"], f"born in {birth}, after the year {year} predicted for")
    if birth is not None and year is not None and age is not None and not year - birth - 2 <= age <= year - birth + 1:
        raise _impossible(
            ["idade", birth_field, "year"],
            f"age {age:g} in {year} is more than a year away from a birth in {birth} ({year - birth - 1}..{year - birth})",
        )
    if joined is not None and year is not None and joined > year:
        raise _impossible(["ano_ingresso", "year"], f"joined in {joined}, after the year {year}")
    if joined is not None and birth is not None and joined < birth:
        raise _impossible(["ano_ingresso", birth_field], f"joined in {joined}, before the birth in {birth}")


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{k: v for k, v in FULL_EXAMPLE.items() if k != "task"}, dict(EXAMPLE)]},
    )

    @model_validator(mode="after")
    def _possible(self) -> _Strict:
        check_combinations(self.__dict__)
        return self


StudentFeatures: type[BaseModel] = create_model(
    "StudentFeatures", __base__=_Strict, __doc__="One student's features; every field is optional.", **_fields
)

_TaskName = Literal["current", "next_year"]


class _OneStudent(StudentFeatures):  # type: ignore[valid-type,misc]
    model_config = ConfigDict(
        json_schema_extra={"examples": [example["value"] for example in PREDICT_EXAMPLES.values()]}
    )


PredictRequest: type[BaseModel] = create_model(
    "PredictRequest",
    __base__=_OneStudent,
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


_PEDE_YEAR_SUFFIX = re.compile(r"\s+\d{2}(\d{2})?$")


def _known_fields() -> list[str]:
    names = set(PredictRequest.model_fields) | set(BatchRequest.model_fields)
    return sorted(names)


def did_you_mean(name: str) -> str | None:
    """The accepted field closest to an unknown one: a PEDE column name (``Gênero``, ``INDE 2024``) or a typo."""
    known = _known_fields()
    raw = _PEDE_YEAR_SUFFIX.sub("", name.strip())
    canonical = column_map().exact.get(raw) or raw.lower()
    if canonical in known:
        return canonical
    close = difflib.get_close_matches(canonical, known, n=1, cutoff=0.6)
    return close[0] if close else None
