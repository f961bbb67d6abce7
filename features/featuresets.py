"""The model inputs of each task, their contract, and the leakage policy.

One definition, used by training, batch scoring, the warehouse feature views and the API.

Leakage policy (enforced by :func:`check_policy` and by an audit at training time):

* ``current`` (behind *this* year): never ``ian``, ``fase_ideal`` or ``defasagem`` of the year
  being predicted (``ian`` is a function of ``defasagem``; ``fase`` with ``fase_ideal`` *is* the
  target), nor ``inde`` and ``pedra`` (they contain ``ian``), ``cg/cf/ct`` (rankings by INDE),
  the evaluators' recommendations, ``indicado``, ``atingiu_pv`` or ``destaque_*`` (written in
  the same evaluation). Last year's values (``prev_*``) are allowed: they are known before.
* ``next_year`` (behind *next* year): everything measured this year is known before next year's
  evaluation, so this year's ``defasagem``, ``ian`` and ``inde`` are allowed; the recommendations
  stay out because they are free text written by evaluators, not measurements.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from features.harmonise import EVALUATION_TEXT
from passos.errors import LeakageError

Task = Literal["current", "next_year"]
TASKS: tuple[Task, ...] = ("current", "next_year")

GENEROS = ("F", "M")
INSTITUICOES = ("publica", "privada_bolsa", "privada", "universidade", "concluiu", "outra")


@dataclass(frozen=True)
class FeatureSpec:
    """One model input: its name, kind, documented range and categories."""

    name: str
    kind: Literal["numeric", "categorical"]
    description: str
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] = field(default_factory=tuple)


def _indicator(name: str, what: str) -> FeatureSpec:
    return FeatureSpec(name, "numeric", f"{what} indicator, 0-10", 0.0, 10.0)


_BASE: tuple[FeatureSpec, ...] = (
    FeatureSpec("fase", "numeric", "Level in the programme (ALFA = 0, 1..8, 9 = graduated)", 0, 9),
    FeatureSpec("idade", "numeric", "Age in years", 4, 40),
    FeatureSpec("idade_menos_fase", "numeric", "Age minus level (derived; large means older for the level)", -10, 40),
    FeatureSpec("anos_no_programa", "numeric", "Years since joining the programme (derived)", 0, 30),
    FeatureSpec("idade_ref", "numeric", "Age on 31 March of the year, from the birth date (derived)", 3, 45),
    FeatureSpec("fase_esperada", "numeric", "Level expected for the age by the school-grade rule (derived)", 0, 8),
    FeatureSpec(
        "atraso_esperado", "numeric", "fase minus fase_esperada (derived; negative = below the age's level)", -10, 10
    ),
    FeatureSpec("genero", "categorical", "Gender", categories=GENEROS),
    FeatureSpec("instituicao", "categorical", "School type (collapsed)", categories=INSTITUICOES),
    _indicator("iaa", "Self-assessment (IAA)"),
    _indicator("ieg", "Engagement (IEG)"),
    _indicator("ips", "Psychosocial (IPS)"),
    _indicator("ipp", "Psycho-pedagogical (IPP)"),
    _indicator("ida", "Learning (IDA)"),
    _indicator("ipv", "Turning point (IPV)"),
    FeatureSpec("mat", "numeric", "Maths grade, 0-10", 0.0, 10.0),
    FeatureSpec("por", "numeric", "Portuguese grade, 0-10", 0.0, 10.0),
    FeatureSpec("ing", "numeric", "English grade, 0-10", 0.0, 10.0),
    FeatureSpec("prev_defasagem", "numeric", "Last year's setback (years; negative = behind)", -10, 10),
    FeatureSpec("prev_inde", "numeric", "Last year's INDE, 0-10", 0.0, 10.0),
    FeatureSpec("prev_ida", "numeric", "Last year's IDA, 0-10", 0.0, 10.0),
)

_THIS_YEAR_OUTCOMES: tuple[FeatureSpec, ...] = (
    FeatureSpec(
        "folga_proximo_ano", "numeric", "fase + 1 minus the level expected for next year's age (derived)", -10, 10
    ),
    FeatureSpec("defasagem", "numeric", "This year's setback (years; negative = behind)", -10, 10),
    _indicator("ian", "Level adequacy (IAN)"),
    FeatureSpec("inde", "numeric", "This year's INDE, 0-10", 0.0, 10.0),
)

FEATURES: dict[str, tuple[FeatureSpec, ...]] = {
    "current": _BASE,
    "next_year": _BASE + _THIS_YEAR_OUTCOMES,
}

# Columns a task may never use (see the module docstring).
_ALWAYS_FORBIDDEN = frozenset({"pedra", "cg", "cf", "ct", *EVALUATION_TEXT, "target"})
FORBIDDEN: dict[str, frozenset[str]] = {
    "current": _ALWAYS_FORBIDDEN | {"ian", "fase_ideal", "defasagem", "inde"},
    "next_year": _ALWAYS_FORBIDDEN | {"next_defasagem", "next_fase_ideal", "next_ian"},
}

# The fields a client sends to obtain each derived feature (the simplest way; ``idade_ref`` also
# comes from ``data_nasc`` or ``ano_nasc`` with ``year``).
DERIVED_FROM: dict[str, tuple[str, ...]] = {
    "idade_menos_fase": ("idade", "fase"),
    "anos_no_programa": ("ano_ingresso", "year"),
    "idade_ref": ("idade",),
    "fase_esperada": ("idade",),
    "atraso_esperado": ("idade", "fase"),
    "folga_proximo_ano": ("idade", "fase"),
}
# Features only the service computes: a request cannot carry them (``anos_no_programa`` it can).
DERIVED = frozenset(name for name in DERIVED_FROM if name != "anos_no_programa")


def fields_to_send(features: Iterable[str]) -> list[str]:
    """The request fields that provide ``features`` (derived features mapped to their sources)."""
    out: set[str] = set()
    for name in features:
        out.update(DERIVED_FROM.get(name, (name,)))
    return sorted(out)


# Fields of the original design's example payload; accepted by the API for every task.
LEGACY_PAYLOAD_FIELDS = ("inde", "iaa", "ips", "ipp", "ipv", "fase")


def feature_specs(task: str) -> tuple[FeatureSpec, ...]:
    """The ordered feature contract of a task."""
    try:
        return FEATURES[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}") from None


def feature_names(task: str) -> list[str]:
    """The ordered feature names of a task."""
    return [spec.name for spec in feature_specs(task)]


def categorical_indices(task: str) -> list[int]:
    """Positions of the categorical features in the task's matrix."""
    return [i for i, spec in enumerate(feature_specs(task)) if spec.kind == "categorical"]


def check_policy(task: str, names: Iterable[str]) -> None:
    """Raise :class:`LeakageError` naming every forbidden column among ``names``."""
    bad = sorted(set(names) & FORBIDDEN[task])
    if bad:
        raise LeakageError(f"task {task!r} may not use {', '.join(bad)} (leakage policy, features/featuresets.py)")


def all_api_fields() -> list[str]:
    """Every field the API accepts: the union of all tasks' features and the legacy payload."""
    seen: dict[str, None] = {}
    for task in TASKS:
        for name in feature_names(task):
            seen.setdefault(name, None)
    for name in LEGACY_PAYLOAD_FIELDS:
        seen.setdefault(name, None)
    return list(seen)


# Brazilian school grades by age on 31 March (6 → 1º ano), and the programme's level for each
# grade as the 2023-2024 sheets state it ("ALFA (1° e 2° ano)", "Fase 1 (3° e 4° ano)", ...).
_LEVEL_BY_GRADE = {1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 2, 7: 3, 8: 3, 9: 4, 10: 5, 11: 6, 12: 7}


def fase_esperada(idade_ref: float) -> float:
    """The level expected for a student of this age (``warehouse/sql`` macro ``fase_esperada``)."""
    if math.isnan(idade_ref):
        return math.nan
    grade = math.floor(idade_ref) - 5
    if grade < 1:
        return 0.0
    if grade > 12:
        return 8.0
    return float(_LEVEL_BY_GRADE[grade])


def idade_ref(record: Mapping[str, object], year: int | None) -> float:
    """Age on 31 March of ``year``: from ``data_nasc``, else ``ano_nasc``, else ``idade``."""
    from datetime import date, datetime

    born = record.get("data_nasc")
    if year is not None and born is not None:
        if isinstance(born, str):
            born = date.fromisoformat(born[:10])
        if isinstance(born, datetime):  # also pandas.Timestamp
            born = date(born.year, born.month, born.day)
        if isinstance(born, date):
            return (date(int(year), 3, 31) - born).days / 365.25
    ano_nasc = _num(record.get("ano_nasc"))
    if year is not None and not math.isnan(ano_nasc):
        return year - ano_nasc - 0.25
    return _num(record.get("idade")) - 0.25


def derive(record: Mapping[str, object], *, year: int | None = None) -> dict[str, object]:
    """Add the derived features to a record of raw values (returns a new dict).

    The same definitions as the warehouse views (a data test checks they agree):
    ``idade_menos_fase`` = idade - fase; ``anos_no_programa`` = year - ano_ingresso (or given);
    ``idade_ref`` = age on 31 March (:func:`idade_ref`); ``fase_esperada`` and
    ``atraso_esperado`` = fase - fase_esperada; ``folga_proximo_ano`` = fase + 1 -
    fase_esperada(idade_ref + 1).
    """
    out = dict(record)
    if out.get("idade_ref") is None:
        ref = idade_ref(out, year)
        out["idade_ref"] = None if math.isnan(ref) else ref
    ref = _num(out.get("idade_ref"))
    fase_value = _num(out.get("fase"))
    if not math.isnan(ref):
        out["fase_esperada"] = fase_esperada(ref)
        if not math.isnan(fase_value):
            out["atraso_esperado"] = fase_value - fase_esperada(ref)
            out["folga_proximo_ano"] = fase_value + 1 - fase_esperada(ref + 1)
    idade, fase = _num(out.get("idade")), _num(out.get("fase"))
    if out.get("idade_menos_fase") is None and not (math.isnan(idade) or math.isnan(fase)):
        out["idade_menos_fase"] = idade - fase
    ingresso = _num(out.get("ano_ingresso"))
    if out.get("anos_no_programa") is None and year is not None and not math.isnan(ingresso):
        out["anos_no_programa"] = max(0.0, year - ingresso)
    return out


def _num(value: object) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def encode(records: Sequence[Mapping[str, object]], task: str) -> np.ndarray:
    """Turn records (dicts of feature values) into the task's float matrix.

    Missing values become NaN; categoricals become the index of their category (NaN when
    unknown or missing). Derived features must already be present (see :func:`derive`).
    """
    specs = feature_specs(task)
    matrix = np.full((len(records), len(specs)), np.nan, dtype=np.float64)
    for j, spec in enumerate(specs):
        if spec.kind == "categorical":
            index = {c: float(i) for i, c in enumerate(spec.categories)}
            for i, record in enumerate(records):
                value = record.get(spec.name)
                if value is not None:
                    matrix[i, j] = index.get(str(value), np.nan)
        else:
            for i, record in enumerate(records):
                matrix[i, j] = _num(record.get(spec.name))
    return matrix


def encode_frame(frame: pd.DataFrame, task: str) -> np.ndarray:
    """Vectorised :func:`encode` for a DataFrame holding the task's feature columns."""
    specs = feature_specs(task)
    columns = []
    for spec in specs:
        series = frame[spec.name] if spec.name in frame else pd.Series(np.nan, index=frame.index)
        if spec.kind == "categorical":
            codes = pd.Categorical(series.astype("object"), categories=list(spec.categories)).codes
            columns.append(np.where(codes < 0, np.nan, codes).astype(np.float64))
        else:
            columns.append(pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))
    return np.column_stack(columns) if columns else np.empty((len(frame), 0))
