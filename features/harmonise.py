"""Harmonisation of raw PEDE rows into typed student rows: one pure function per quirk.

Every rule here has a unit test on the real quirk it handles (see ``../shared/data/README.md``).
Values that cannot be recovered become ``None`` and are reported as data-quality issues;
rows that break a range check are quarantined by :func:`harmonise`, never loaded silently.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from features.columns import MappedHeader

_HERE = Path(__file__).resolve().parent
NUMERIC_MARKERS = frozenset({"incluir", "#n/a", "n/a", "na", "nan", "-", "--", "#valor!", "#ref!", "#div/0!"})
INDICATORS = ("iaa", "ieg", "ips", "ipp", "ida", "ipv", "ian", "inde")
GRADES = ("mat", "por", "ing")
# What the evaluators wrote in the same evaluation (recommendations, highlights): kept for
# analysts, never a model input (features/featuresets.py).
EVALUATION_TEXT = (
    "rec_av1",
    "rec_av2",
    "rec_av3",
    "rec_av4",
    "rec_psicologia",
    "indicado",
    "atingiu_pv",
    "destaque_ieg",
    "destaque_ida",
    "destaque_ipv",
)
# Indicators are 0-10; the 2024 sheet holds 10.002 and 2023 holds 10.01 (rounding noise), so
# the range check allows a small tolerance and values in it are clipped to 10.
INDICATOR_TOLERANCE = 0.05
AGE_RANGE = (4, 40)
FASE_RANGE = (0, 9)
DEFASAGEM_RANGE = (-10, 10)
REDACTED = "<redacted>"


@lru_cache(maxsize=1)
def _labels() -> dict[str, dict[str, str]]:
    raw = yaml.safe_load((_HERE / "labels.yaml").read_text(encoding="utf-8"))
    return {group: {_fold(k): v for k, v in table.items()} for group, table in raw.items()}


def _fold(text: str) -> str:
    """Lower-case, strip accents and collapse spaces, for label matching."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"\s+", " ", text).strip().lower()


# --- value rules -------------------------------------------------------------------------


class ValueProblem(ValueError):
    """A raw value that cannot be turned into the column's type."""


def _blank(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and raw.strip() == "")


def parse_number(raw: Any) -> float | None:
    """A number from a cell: ``"7.5"``, ``"7,5"``, ``7``; blank is ``None``.

    Raises:
        ValueProblem: for text such as ``INCLUIR`` or ``#N/A`` (counted as a data-quality issue).
    """
    if _blank(raw):
        return None
    if isinstance(raw, bool):
        raise ValueProblem(f"not a number: {raw!r}")
    if isinstance(raw, int | float):
        return float(raw)
    text = str(raw).strip()
    if text.lower() in NUMERIC_MARKERS:
        raise ValueProblem(f"marker {text!r} in a numeric column")
    try:
        value = float(text.replace(",", ".")) if text.count(",") == 1 and "." not in text else float(text)
    except ValueError:
        raise ValueProblem(f"not a number: {text[:40]!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueProblem(f"not a finite number: {text!r}")
    return value


def parse_int(raw: Any) -> int | None:
    """An integer from a cell (``"3"``, ``"3.0"``); a fractional value is a problem."""
    value = parse_number(raw)
    if value is None:
        return None
    if value != int(value):
        raise ValueProblem(f"not an integer: {raw!r}")
    return int(value)


_FASE_CODE = re.compile(r"^(?:FASE\s*)?(\d{1,2})(?:\.0)?\s*[A-Z]?$", re.IGNORECASE)


def parse_fase(raw: Any) -> int | None:
    """The programme level: ``3`` (2022), ``ALFA`` / ``FASE 3`` (2023), ``7E`` / ``9`` (2024)."""
    if _blank(raw):
        return None
    text = str(raw).strip()
    if text.upper().startswith("ALFA"):
        return 0
    match = _FASE_CODE.match(text)
    if not match:
        raise ValueProblem(f"unrecognised fase {text[:40]!r}")
    return int(match.group(1))


_FASE_IDEAL = re.compile(r"^\s*(ALFA|Fase\s*(\d))", re.IGNORECASE)


def parse_fase_ideal(raw: Any) -> int | None:
    """The ideal level: ``Fase 2 (5º e 6º ano)`` is 2, ``ALFA (1° e 2° ano)`` is 0, ``3`` is 3."""
    if _blank(raw):
        return None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return int(raw)
    text = str(raw).strip()
    match = _FASE_IDEAL.match(text)
    if match:
        return 0 if match.group(1).upper() == "ALFA" else int(match.group(2))
    try:
        return parse_int(text)
    except ValueProblem:
        raise ValueProblem(f"unrecognised fase ideal {text[:40]!r}") from None


_EXCEL_EPOCH = datetime(1899, 12, 31)


def parse_idade(raw: Any) -> int | None:
    """Age in years. The 2023 sheet stores some ages as Excel dates: ``1900-01-08 00:00:00`` is 8."""
    if _blank(raw):
        return None
    if isinstance(raw, datetime):
        return (raw - _EXCEL_EPOCH).days
    text = str(raw).strip()
    if text.startswith("1900-"):
        try:
            stamp = datetime.fromisoformat(text)
        except ValueError:
            raise ValueProblem(f"unrecognised age {text!r}") from None
        return (stamp - _EXCEL_EPOCH).days
    return parse_int(text)


def parse_date(raw: Any) -> date | None:
    """A birth date: ``6/17/2015`` (month first, as the sheet exports it) or ``2015-12-03 00:00:00``."""
    if _blank(raw):
        return None
    if isinstance(raw, datetime):
        return raw.date()
    if isinstance(raw, date):
        return raw
    text = str(raw).strip()
    for fmt in ("%m/%d/%Y", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    if isinstance(raw, int | float) or re.fullmatch(r"\d{5}(\.0)?", text):
        # serials past 1900-02-28 count Excel's phantom 1900-02-29, hence the 30th
        return (datetime(1899, 12, 30) + timedelta(days=int(float(text)))).date()
    raise ValueProblem(f"unrecognised date {text[:40]!r}")


def _label(group: str, raw: Any) -> str | None:
    if _blank(raw):
        return None
    folded = _fold(str(raw)).replace("º", "o")
    table = _labels()[group]
    if folded in table:
        return table[folded]
    raise ValueProblem(f"unknown {group} label {str(raw)[:60]!r}")


def parse_label(group: str, raw: Any) -> str | None:
    """A raw label of ``group`` (``genero``, ``instituicao``, ``pedra``) as its code; unknown is a problem."""
    return _label(group, raw)


def label_spellings(group: str) -> list[str]:
    """The spellings ``group`` accepts, as compared (lower case, no accents; ``*`` is literal)."""
    return sorted(_labels()[group])


def clip_rounding_noise(value: float) -> float:
    """A 0-10 indicator or grade: up to ``10 + INDICATOR_TOLERANCE`` is the sheets' rounding noise, clipped to 10.

    Raises:
        ValueProblem: below 0 or above the tolerance.
    """
    if not 0.0 <= value <= 10.0 + INDICATOR_TOLERANCE:
        raise ValueProblem(f"{value} outside 0-10")
    return min(value, 10.0)


def parse_genero(raw: Any) -> str | None:
    """``Menina``/``Feminino`` → ``F``; ``Menino``/``Masculino`` → ``M``."""
    return _label("genero", raw)


def parse_instituicao(raw: Any) -> str | None:
    """School type collapsed into ``publica, privada_bolsa, privada, universidade, concluiu, outra``."""
    try:
        return _label("instituicao", raw)
    except ValueProblem:
        return "outra"


def parse_pedra(raw: Any) -> str | None:
    """INDE band: ``Quartzo < Ágata < Ametista < Topázio`` (``INCLUIR`` is a problem)."""
    return _label("pedra", raw)


def parse_text(raw: Any) -> str | None:
    """Free text, trimmed; blank is ``None``."""
    if _blank(raw):
        return None
    text = str(raw).strip()
    # a workbook stores a class code such as 9 as a number; the CSV export writes "9"
    return text[:-2] if re.fullmatch(r"\d+\.0", text) else text


# --- row harmonisation -----------------------------------------------------------------

PARSERS: dict[str, Any] = {
    "ra": parse_text,
    "fase": parse_fase,
    "turma": parse_text,
    "idade": parse_idade,
    "ano_nasc": parse_int,
    "data_nasc": parse_date,
    "genero": parse_genero,
    "ano_ingresso": parse_int,
    "instituicao": parse_instituicao,
    "escola": parse_text,
    "defasagem": parse_int,
    "fase_ideal": parse_fase_ideal,
    "pedra": parse_pedra,
    "cg": parse_int,
    "cf": parse_int,
    "ct": parse_int,
    "n_av": parse_int,
    **dict.fromkeys(INDICATORS + GRADES, parse_number),
    **dict.fromkeys((*EVALUATION_TEXT, "ativo"), parse_text),
}
# The warehouse `students` columns, in order (see warehouse/sql/schema.sql).
STUDENT_COLUMNS: tuple[str, ...] = (
    "ra",
    "year",
    "fase",
    "turma",
    "idade",
    "ano_nasc",
    "data_nasc",
    "genero",
    "ano_ingresso",
    "instituicao",
    "instituicao_raw",
    "escola",
    "defasagem",
    "fase_ideal",
    *INDICATORS,
    "pedra",
    *GRADES,
    "cg",
    "cf",
    "ct",
    "n_av",
    *EVALUATION_TEXT,
    "ativo",
)


@dataclass
class Issue:
    """A value that could not be recovered (it became null) — a data-quality issue."""

    line: int
    column: str
    raw: str
    problem: str


@dataclass
class Rejected:
    """A row that failed a check and goes to quarantine."""

    line: int
    reason: str
    raw: str


@dataclass
class Harmonised:
    """The result of harmonising one year's raw rows."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)


def _first_value(raw_row: Sequence[Any], positions: list[int]) -> Any:
    for position in positions:
        if position < len(raw_row) and not _blank(raw_row[position]):
            return raw_row[position]
    return None


def harmonise(
    raw_rows: Sequence[Sequence[Any]],
    mapped: MappedHeader,
    year: int,
    *,
    first_line: int = 2,
    n_columns: int | None = None,
) -> Harmonised:
    """Turn raw rows into typed student rows, quarantining the ones that break a check.

    Args:
        raw_rows: the data rows, as read (strings from a CSV, typed cells from a workbook).
        mapped: the file's mapped header.
        year: the file's year.
        first_line: the file line number of the first data row (for messages).
        n_columns: the header width; a row of another width is quarantined (truncated file).
    """
    out = Harmonised()
    seen_ra: dict[str, int] = {}
    for offset, raw_row in enumerate(raw_rows):
        line = first_line + offset
        if n_columns is not None and len(raw_row) != n_columns:
            # Its values cannot be matched to the header's names (one extra cell shifts a birth
            # date out of its column), so none is kept: redaction is by name, never by position.
            withheld = f"<{len(raw_row)} values withheld: they do not line up with the header's {n_columns} names>"
            out.rejected.append(Rejected(line, f"row has {len(raw_row)} fields, header has {n_columns}", withheld))
            continue
        raw_text = _raw_text(raw_row, mapped.redacted)
        row: dict[str, Any] = {"year": year}
        issues: list[Issue] = []
        for column, positions in mapped.sources.items():
            value = _first_value(raw_row, positions)
            parser = PARSERS.get(column, parse_text)
            try:
                row[column] = parser(value)
            except ValueProblem as problem:
                row[column] = None
                if set(positions) & mapped.redacted:
                    issues.append(Issue(line, column, REDACTED, "unrecognised value (redacted: personal data)"))
                else:
                    issues.append(Issue(line, column, str(value)[:200], str(problem)))
            if column == "instituicao":
                row["instituicao_raw"] = parse_text(value)
        reason = _check(row, seen_ra, mapped.id_pattern)
        if reason:
            out.rejected.append(Rejected(line, reason, raw_text))
            continue
        _recover(row)
        seen_ra[row["ra"]] = line
        out.issues.extend(issues)
        out.rows.append({column: row.get(column) for column in STUDENT_COLUMNS})
    return out


def _raw_text(raw_row: Sequence[Any], redacted: frozenset[int]) -> str:
    """The raw row as one line for quarantine, with names and birth dates replaced by a marker."""
    cells = (
        REDACTED if i in redacted and not _blank(v) else "" if v is None else str(v) for i, v in enumerate(raw_row)
    )
    return "|".join(cells)[:2000]


def _check(row: dict[str, Any], seen_ra: dict[str, int], id_pattern: re.Pattern[str] | None = None) -> str | None:
    ra = row.get("ra")
    if not ra:
        return "missing RA"
    if id_pattern is not None and not id_pattern.match(ra):
        # a formula such as =HYPERLINK(...) or @SUM(...) is not an id: the reason does not quote it
        return "RA is not an id: expected up to 40 letters, digits and . _ / - (a formula or text is not an id)"
    if ra in seen_ra:
        return f"duplicate RA {ra!r} (first on line {seen_ra[ra]})"
    for column in (*INDICATORS, *GRADES):
        value = row.get(column)
        if value is not None:
            try:
                row[column] = clip_rounding_noise(value)
            except ValueProblem:
                return f"{column} = {value} outside 0-10"
    checks = (("idade", AGE_RANGE), ("fase", FASE_RANGE), ("defasagem", DEFASAGEM_RANGE))
    for column, (low, high) in checks:
        value = row.get(column)
        if value is not None and not low <= value <= high:
            return f"{column} = {value} outside {low}-{high}"
    return None


def _recover(row: dict[str, Any]) -> None:
    """Fill values that other columns determine exactly (fase = fase_ideal + defasagem; age from birth)."""
    if row.get("fase") is None and row.get("fase_ideal") is not None and row.get("defasagem") is not None:
        row["fase"] = row["fase_ideal"] + row["defasagem"]
    if row.get("ano_nasc") is None and row.get("data_nasc") is not None:
        row["ano_nasc"] = row["data_nasc"].year
    if row.get("idade") is None and row.get("ano_nasc") is not None:
        row["idade"] = row["year"] - row["ano_nasc"]
