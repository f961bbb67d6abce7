"""The call list: categories from the sheet and the next_year labels, ranks, words, safe files."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from cli.app import app
from passos.settings import Settings
from warehouse import loader
from warehouse.analytics import refresh_analytics
from warehouse.call_list import read_call_list, write_call_list
from warehouse.connection import connect, replace_rows
from warehouse.sources import discover

HEADER = "RA,Fase,Turma,Idade,Gênero,IAA,IEG,IPS,IDA,IPV,IAN,INDE 2030,Defasagem,Fase Ideal,Instituição de ensino"
# ra, turma, defasagem, next_year (score, label): A, B behind now; C, D on track and high; E on track, low;
# F behind now and not scored; G on track and unknown.
STUDENTS = [
    ("A", '=HYPERLINK("http://x")', -1, 0.7, "high"),
    ("B", "2A", -2, 0.9, "high"),
    ("C", "3B", 0, 0.8, "high"),
    ("D", "3B", 1, 0.6, "high"),
    ("E", "3C", 0, 0.2, "low"),
    ("F", "3C", -1, None, None),
    ("G", "3C", 0, None, "unknown"),
]


def _load(settings: Settings, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        f'{ra},FASE 3,"{turma.replace(chr(34), chr(34) * 2)}",12,Feminino,8,7,6,5,7,10,8.0,{gap},Fase 3,Escola Pública'
        for ra, turma, gap, _, _ in STUDENTS
    ]
    (folder / "pede_2030.csv").write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    with connect(settings) as con:
        loader.ingest(con, "run", discover([folder]))
        reasons = json.dumps(
            [
                {"feature": "defasagem", "value": -1.0, "contribution": 0.5},
                {"feature": "ida", "value": 9.0, "contribution": -0.2},
            ]
        )
        frame = pd.DataFrame(
            [
                {
                    "ra": ra,
                    "year": 2030,
                    "task": "next_year",
                    "model_version": "v-next",
                    "risk_score": score,
                    "risk_label": label,
                    "rank": 1,
                    "reasons": reasons if score is not None else "[]",
                    "scored_at": datetime(2030, 3, 1, 8, 30),
                }
                for ra, _, _, score, label in STUDENTS
                if label is not None
            ]
        )
        replace_rows(con, "risk_scores", frame)


@pytest.fixture
def listed(settings: Settings, tmp_path: Path) -> pd.DataFrame:
    _load(settings, tmp_path / "in")
    return read_call_list(settings)


def test_categories_follow_the_sheet_and_the_next_year_labels(listed: pd.DataFrame, settings: Settings) -> None:
    with connect(settings, read_only=True) as con:
        truth = con.execute(
            "select st.ra, st.defasagem, r.risk_label from students as st "
            "left join risk_scores as r on r.ra = st.ra and r.task = 'next_year'"
        ).df()
    expected = {
        row.ra: ("behind now" if row.defasagem < 0 else "newly at risk")
        for row in truth.itertuples()
        if row.defasagem < 0 or row.risk_label == "high"
    }
    assert dict(zip(listed["ra"], listed["category"], strict=True)) == expected
    assert list(listed[["category", "rank", "ra"]].itertuples(index=False, name=None)) == [
        ("newly at risk", 1, "C"),
        ("newly at risk", 2, "D"),
        ("behind now", 1, "B"),
        ("behind now", 2, "A"),
        ("behind now", 3, "F"),  # not scored: last in its category
    ]
    first = listed.iloc[0]
    assert (first["level"], first["turma"], first["model_version"]) == ("Fase 3", "3B", "v-next")
    assert first["reasons"] == "This year's setback (years; negative = behind) = -1.0"
    assert "ida" not in first["reasons"].lower()  # only reasons that raised the risk
    assert listed.loc[listed["ra"] == "F", "risk_label"].item() == "not scored"


def test_the_files_open_safely_in_a_spreadsheet(listed: pd.DataFrame, tmp_path: Path) -> None:
    csv_path, xlsx_path = write_call_list(listed, tmp_path / "out" / "call_list.csv")
    assert (csv_path.name, xlsx_path.name) == ("call_list.csv", "call_list.xlsx")
    with csv_path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    a = next(r for r in rows if r["ra"] == "A")
    assert a["turma"] == '\'=HYPERLINK("http://x")' and a["defasagem"] == "-1"
    assert a["scored_at"] == "2030-03-01 08:30:00"
    sheet = load_workbook(xlsx_path)["call list"]
    header = [c.value for c in sheet[1]]
    assert header[:4] == ["category", "rank", "ra", "year"]
    cells = {row[header.index("ra")].value: row for row in sheet.iter_rows(min_row=2)}
    turma = cells["A"][header.index("turma")]
    assert turma.value == '=HYPERLINK("http://x")' and turma.data_type == "s"  # shown as text, never run
    assert cells["B"][header.index("rank")].value == 1 and cells["B"][header.index("risk_score")].value == 0.9
    assert sheet.max_row == len(listed) + 1


def test_cli_exports_both_files(settings: Settings, tmp_path: Path) -> None:
    _load(settings, tmp_path / "in")
    refresh_analytics(settings)
    out = tmp_path / "reports" / "calls.xlsx"
    result = CliRunner().invoke(app, ["call-list", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 newly at risk" in result.output and "3 behind now" in result.output
    assert out.with_suffix(".csv").exists() and out.exists()


def test_cli_refuses_an_empty_list(settings: Settings, tmp_path: Path) -> None:
    with connect(settings):
        pass
    result = CliRunner().invoke(app, ["call-list", "--out", str(tmp_path / "c.csv")])
    assert result.exit_code == 2 and "passos score --task next_year" in result.output
