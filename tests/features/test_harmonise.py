"""Unit tests of each harmonisation rule, on the real quirks of the PEDE files."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from features import harmonise as h
from features.columns import map_header


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("3", 3),  # 2022: integer
        (3, 3),
        ("0", 0),
        ("ALFA", 0),  # 2023 and 2024
        ("FASE 3", 3),  # 2023
        ("FASE 8", 8),
        ("7E", 7),  # 2024 class codes
        ("4M", 4),
        ("9", 9),  # 2024: graduated university students
        ("", None),
        (None, None),
    ],
)
def test_parse_fase(raw: object, expected: int | None) -> None:
    assert h.parse_fase(raw) == expected


@pytest.mark.parametrize("raw", ["FASE X", "ALF", "12345", "7EE"])
def test_parse_fase_rejects_garbage(raw: str) -> None:
    with pytest.raises(h.ValueProblem, match="fase"):
        h.parse_fase(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12", 12),
        ("1900-01-08 00:00:00", 8),  # 2023: an age stored as an Excel date
        ("1900-01-16 00:00:00", 16),
        (datetime(1900, 1, 11), 11),  # the same, read from the workbook
        ("", None),
    ],
)
def test_parse_idade(raw: object, expected: int | None) -> None:
    assert h.parse_idade(raw) == expected


def test_parse_idade_rejects_text() -> None:
    with pytest.raises(h.ValueProblem):
        h.parse_idade("doze")
    with pytest.raises(h.ValueProblem):
        h.parse_idade("1900-13-45 00:00:00")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("6/17/2015", date(2015, 6, 17)),  # month first, as the sheet exports it
        ("2015-12-03 00:00:00", date(2015, 12, 3)),
        ("2015-12-03", date(2015, 12, 3)),
        (datetime(2015, 12, 3), date(2015, 12, 3)),
        (date(2015, 12, 3), date(2015, 12, 3)),
        ("42000", date(2014, 12, 27)),  # an Excel serial number
        ("", None),
    ],
)
def test_parse_date(raw: object, expected: date | None) -> None:
    assert h.parse_date(raw) == expected


def test_parse_date_rejects_garbage() -> None:
    with pytest.raises(h.ValueProblem, match="date"):
        h.parse_date("31/31/2015")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("7.5", 7.5), ("7,5", 7.5), (7, 7.0), ("10.002", 10.002), ("", None), (None, None)],
)
def test_parse_number(raw: object, expected: float | None) -> None:
    assert h.parse_number(raw) == expected


@pytest.mark.parametrize("raw", ["INCLUIR", "#N/A", "-", "abc", "nan", "inf", True])
def test_parse_number_markers_are_problems(raw: object) -> None:
    with pytest.raises(h.ValueProblem):
        h.parse_number(raw)


def test_parse_int() -> None:
    assert h.parse_int("2022") == 2022
    assert h.parse_int("3.0") == 3
    with pytest.raises(h.ValueProblem, match="integer"):
        h.parse_int("3.5")


@pytest.mark.parametrize(
    ("raw", "expected"), [("Menina", "F"), ("Feminino", "F"), ("Menino", "M"), ("Masculino", "M"), ("", None)]
)
def test_parse_genero(raw: str, expected: str | None) -> None:
    assert h.parse_genero(raw) == expected


def test_parse_genero_unknown_is_a_problem() -> None:
    with pytest.raises(h.ValueProblem, match="genero"):
        h.parse_genero("X")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Escola Pública", "publica"),
        ("Pública", "publica"),
        ("Rede Decisão", "privada_bolsa"),
        ("Escola JP II", "privada_bolsa"),
        ("Privada - Programa de Apadrinhamento", "privada_bolsa"),
        ("Privada - Programa de apadrinhamento", "privada_bolsa"),
        ("Privada *Parcerias com Bolsa 100%", "privada_bolsa"),
        ("Privada - Pagamento por *Empresa Parceira", "privada_bolsa"),
        ("Privada", "privada"),
        ("Bolsista Universitário *Formado (a)", "universidade"),
        ("Concluiu o 3º EM", "concluiu"),
        ("Nenhuma das opções acima", "outra"),
        ("Something new", "outra"),
        ("", None),
    ],
)
def test_parse_instituicao(raw: str, expected: str | None) -> None:
    assert h.parse_instituicao(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Fase 2 (5º e 6º ano)", 2),
        ("Fase 2 (5° e 6° ano)", 2),
        ("ALFA  (2º e 3º ano)", 0),
        ("Fase 8 (Universitários)", 8),
        ("3", 3),
        (3, 3),
        ("", None),
    ],
)
def test_parse_fase_ideal(raw: object, expected: int | None) -> None:
    assert h.parse_fase_ideal(raw) == expected


def test_parse_fase_ideal_garbage() -> None:
    with pytest.raises(h.ValueProblem, match="fase ideal"):
        h.parse_fase_ideal("Nível alto")


def test_parse_pedra() -> None:
    assert h.parse_pedra("Agata") == "Ágata"
    assert h.parse_pedra("Ágata") == "Ágata"
    assert h.parse_pedra("TOPÁZIO") == "Topázio"
    with pytest.raises(h.ValueProblem):
        h.parse_pedra("INCLUIR")


def test_parse_text_renders_workbook_numbers_like_the_csv() -> None:
    assert h.parse_text("9.0") == "9"
    assert h.parse_text(" 7E ") == "7E"
    assert h.parse_text("  ") is None


def test_map_header_recognises_year_suffixes_for_any_year() -> None:
    header = ["RA", "Fase", "INDE 2025", "Pedra 2025", "INDE 24", "Pedra 24", "IAA", "IEG", "IPS", "Nome"]
    mapped = map_header(header, 2025)
    assert mapped.sources["inde"] == [2]
    assert mapped.sources["pedra"] == [3]
    assert "INDE 24" in mapped.ignored and "Nome" in mapped.ignored


def test_map_header_prefers_four_digit_year_and_reports_duplicates() -> None:
    header = ["RA", "Fase", "INDE 23", "INDE 2023", "Destaque IPV", "Destaque IPV", "Idade 22", "Coluna nova"]
    mapped = map_header(header, 2023)
    assert mapped.sources["inde"] == [3, 2]
    assert mapped.sources["destaque_ipv"] == [4, 5]
    assert mapped.duplicates == ["Destaque IPV"]
    assert "idade" not in mapped.sources  # "Idade 22" in a 2023 file is last year's age
    assert mapped.unknown == ["Idade 22", "Coluna nova"]


def _rows(header: list[str], *rows: list[str], year: int = 2024) -> h.Harmonised:
    return h.harmonise(rows, map_header(header, year), year, n_columns=len(header))


HEADER = ["RA", "Fase", "Idade", "IAA", "IDA", "INDE 2024", "Defasagem", "Fase Ideal", "Data de Nasc"]


def test_harmonise_typical_row_and_marker_issue() -> None:
    out = _rows(HEADER, ["RA-1", "7E", "1900-01-12 00:00:00", "10.002", "5", "INCLUIR", "-1", "Fase 8 (Univ)", ""])
    assert not out.rejected
    (row,) = out.rows
    assert row["fase"] == 7 and row["idade"] == 12 and row["iaa"] == 10.0 and row["inde"] is None
    assert row["fase_ideal"] == 8 and row["defasagem"] == -1
    assert [(i.column, i.raw) for i in out.issues] == [("inde", "INCLUIR")]


def test_harmonise_quarantines_range_breaks_missing_ra_duplicates_and_short_rows() -> None:
    out = _rows(
        HEADER,
        ["RA-1", "3", "12", "11.5", "5", "7", "0", "Fase 3", ""],
        ["", "3", "12", "5", "5", "7", "0", "Fase 3", ""],
        ["RA-2", "3", "150", "5", "5", "7", "0", "Fase 3", ""],
        ["RA-3", "3", "12", "5", "5", "7", "0", "Fase 3", ""],
        ["RA-3", "3", "12", "5", "5", "7", "0", "Fase 3", ""],
        ["RA-4", "3", "12"],
    )
    reasons = [r.reason for r in out.rejected]
    assert reasons[0] == "iaa = 11.5 outside 0-10"
    assert reasons[1] == "missing RA"
    assert reasons[2] == "idade = 150 outside 4-40"
    assert reasons[3].startswith("duplicate RA 'RA-3' (first on line 5)")
    assert reasons[4] == "row has 3 fields, header has 9"
    assert [r.line for r in out.rejected] == [2, 3, 4, 6, 7]
    assert [r["ra"] for r in out.rows] == ["RA-3"]


def test_harmonise_recovers_fase_and_age_from_other_columns() -> None:
    out = _rows(HEADER, ["RA-1", "FASE ?", "", "5", "5", "7", "-1", "Fase 3 (7º e 8º ano)", "6/17/2012"])
    (row,) = out.rows
    assert row["fase"] == 2  # fase ideal 3 + defasagem -1
    assert row["ano_nasc"] == 2012 and row["idade"] == 12
    assert [i.column for i in out.issues] == ["fase"]


@pytest.mark.parametrize(
    "ra",
    ["=cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", '+HYPERLINK("http://x")', "-2+3", "\t=1+1", "RA 1"],
)
def test_an_id_that_is_not_an_id_goes_to_quarantine_without_being_quoted(ra: str) -> None:
    out = _rows(
        HEADER, [ra, "3", "12", "5", "5", "7", "0", "Fase 3", ""], ["RA-2", "3", "12", "5", "5", "7", "0", "3", ""]
    )
    (rejected,) = out.rejected
    assert rejected.reason.startswith("RA is not an id") and ra not in rejected.reason
    assert [r["ra"] for r in out.rows] == ["RA-2"]


@pytest.mark.parametrize("ra", ["RA-1", "RA-12345", "A", "S00001", "2024.17", "x_y/z"])
def test_ordinary_ids_are_kept(ra: str) -> None:
    assert [r["ra"] for r in _rows(HEADER, [ra, "3", "12", "5", "5", "7", "0", "Fase 3", ""]).rows] == [ra]


def test_quarantine_and_issues_keep_no_names_or_birth_dates() -> None:
    header = ["RA", "Nome Anonimizado", "Fase", "IAA", "IDA", "IPV", "Ano nasc", "Data de Nasc", "Defasagem"]
    out = _rows(
        header,
        ["RA-1", "Aluno 4711", "3", "11.5", "5", "7", "2011", "6/17/2011", "0"],  # quarantined: iaa > 10
        ["RA-2", "Aluna 4712", "3", "5", "5", "7", "2012", "31/31/2012", "0"],  # loaded; the date is an issue
    )
    (rejected,) = out.rejected
    assert "4711" not in rejected.raw and "2011" not in rejected.raw and "6/17" not in rejected.raw
    assert rejected.raw == "RA-1|<redacted>|3|11.5|5|7|<redacted>|<redacted>|0"
    (issue,) = out.issues
    assert issue.column == "data_nasc" and "2012" not in issue.raw + issue.problem
