"""The analysts' database (snapshot and rename), the comments on everything, `features` and `at_risk`."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from features.featuresets import FEATURES
from passos.settings import Settings
from warehouse import loader
from warehouse.analytics import refresh_analytics
from warehouse.connection import connect, replace_rows
from warehouse.contracts import CONTRACTS
from warehouse.descriptions import DESCRIPTIONS_FILE, apply_comments, column_description
from warehouse.sources import discover

HEADER = "RA,Fase,Idade,Gênero,IAA,IEG,IPS,IDA,IPV,IAN,INDE 2030,Defasagem,Fase Ideal,Instituição de ensino"


def load_rows(settings: Settings, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        "A,FASE 2,11,Feminino,8.5,7,6,3.5,7.1,5,7.0,-1,Fase 3 (7º e 8º ano),Escola Pública",
        "B,ALFA,8,Masculino,8.5,7,6,9.5,7.1,10,8.0,0,ALFA,Rede Decisão",
        "C,FASE 4,14,Feminino,8.5,7,6,6.5,7.1,10,8.0,0,Fase 4,Escola Pública",
    ]
    (folder / "pede_2030.csv").write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    with connect(settings) as con:
        loader.ingest(con, "run", discover([folder]))


def score_rows(settings: Settings) -> None:
    """Risk rows as `passos score` writes them: A flagged by both tasks, B by next_year only, C by none."""

    def reasons(*items: tuple[str, object, float]) -> str:
        return json.dumps([{"feature": f, "value": v, "contribution": c} for f, v, c in items])

    rows = [
        ("A", "current", 0.9, "high", reasons(("ida", 3.5, 0.8), ("instituicao", "publica", 0.2), ("ipp", None, 0.1))),
        ("A", "next_year", 0.7, "high", reasons(("defasagem", -1.0, 0.5))),
        ("B", "current", 0.2, "low", reasons(("ida", 9.5, 0.1))),
        ("B", "next_year", 0.6, "high", reasons(("idade_menos_fase", 8.0, 0.4))),
        ("C", "current", 0.1, "low", "[]"),
    ]
    frame = pd.DataFrame(
        [
            {
                "ra": ra,
                "year": 2030,
                "task": task,
                "model_version": f"v-{task}",
                "risk_score": score,
                "risk_label": label,
                "rank": 1,
                "reasons": why,
                "scored_at": datetime(2030, 1, 1),
            }
            for ra, task, score, label, why in rows
        ]
    )
    with connect(settings) as con:
        replace_rows(con, "risk_scores", frame)


def undescribed(path: Path) -> list[str]:
    """Every table, view and column of the database at ``path`` that has no comment."""
    with duckdb.connect(str(path), read_only=True) as con:
        tables = con.execute(
            "select table_name from duckdb_tables() where database_name = current_database() and comment is null "
            "union all select view_name from duckdb_views() "
            "where database_name = current_database() and not internal and comment is null"
        ).fetchall()
        columns = con.execute(
            "select table_name || '.' || column_name from duckdb_columns() "
            "where database_name = current_database() and comment is null"
        ).fetchall()
    return [r[0] for r in tables + columns]


def objects(path: Path) -> set[str]:
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(
            "select table_name from duckdb_tables() where database_name = current_database() "
            "union all select view_name from duckdb_views() where database_name = current_database() and not internal"
        ).fetchall()
    return {r[0] for r in rows}


def test_every_table_view_and_column_has_a_comment_in_both_databases(settings: Settings, tmp_path: Path) -> None:
    load_rows(settings, tmp_path / "in")
    score_rows(settings)
    refresh_analytics(settings)
    expected = set(CONTRACTS)
    for path in (settings.warehouse_path, settings.analytics_path):
        assert objects(path) == expected, path
        assert undescribed(path) == [], path
    with duckdb.connect(str(settings.analytics_path), read_only=True) as con:
        (comment,) = con.execute(
            "select comment from duckdb_columns() where table_name = 'features' and column_name = 'atraso_esperado'"
        ).fetchall()[0]
    assert comment == column_description("features", "atraso_esperado") and "fase_esperada" in comment


def test_comments_survive_the_views_being_recreated(settings: Settings) -> None:
    for _ in range(2):  # every writable connection re-creates the views
        with connect(settings):
            pass
    assert undescribed(settings.warehouse_path) == []


def test_an_object_without_a_description_is_reported_not_invented(settings: Settings) -> None:
    with connect(settings) as con:
        con.execute("create table scratch (mystery integer, ra varchar)")
        missing = apply_comments(con)
        (comment,) = con.execute("select comment from duckdb_columns() where column_name = 'mystery'").fetchall()[0]
    assert missing == ["scratch", "scratch.mystery"]
    assert comment is None


def test_the_descriptions_file_never_repeats_a_model_feature() -> None:
    # A feature's words live in features/featuresets.py (the API's /docs shows them): one source.
    data = yaml.safe_load(DESCRIPTIONS_FILE.read_text(encoding="utf-8"))
    features = {spec.name for specs in FEATURES.values() for spec in specs}
    assert sorted(set(data["columns"]) & features) == []
    assert column_description("features_current", "ida") == "Learning (IDA) indicator, 0-10"
    assert column_description("risk_scores", "rank").startswith("Rank of the student")
    assert column_description("students", "no_such_column") is None


def test_features_table_holds_both_tasks_inputs_and_targets(settings: Settings, tmp_path: Path) -> None:
    load_rows(settings, tmp_path / "in")
    refresh_analytics(settings)
    with duckdb.connect(str(settings.analytics_path), read_only=True) as con:
        rows = con.execute(
            "select ra, fase, ida, target_current, target_next_year from features order by ra"
        ).fetchall()
        same = con.execute(
            "select count(*) from features f join features_current c using (ra, year) "
            "where f.target_current is not distinct from c.target and f.atraso_esperado is not distinct from "
            "c.atraso_esperado"
        ).fetchall()
    assert rows == [("A", 2.0, 3.5, 1.0, None), ("B", 0.0, 9.5, 0.0, None), ("C", 4.0, 6.5, 0.0, None)]
    assert same == [(3,)]


def test_at_risk_lists_each_flagged_student_once_with_reasons_in_words(settings: Settings, tmp_path: Path) -> None:
    load_rows(settings, tmp_path / "in")
    score_rows(settings)
    refresh_analytics(settings)
    with duckdb.connect(str(settings.analytics_path), read_only=True) as con:
        frame = con.execute("select * from at_risk").df()
    assert list(frame["ra"]) == ["A", "B"]  # C is not flagged; A is listed once although both tasks flag it
    a, b = frame.to_dict("records")
    assert (a["level"], a["school_type"], a["flagged_by"]) == ("Fase 2", "public school", "both")
    assert a["reasons"] == (
        "Learning (IDA) indicator, 0-10 = 3.5; School type (collapsed) = publica; "
        "Psycho-pedagogical (IPP) indicator, 0-10 = unknown"
    )
    assert (a["risk_now"], a["risk_next_year"], a["model_version"]) == (0.9, 0.7, "v-current")
    assert (b["level"], b["flagged_by"], b["model_version"]) == ("ALFA", "next_year", "v-next_year")
    assert b["school_type"].startswith("private school on a scholarship")
    assert b["reasons"].startswith("Age minus level (derived; large means older for the level) = 8.0")


def test_refresh_replaces_the_file_while_a_reader_in_another_process_holds_it(
    settings: Settings, tmp_path: Path
) -> None:
    refresh_analytics(settings)
    reader = hold_open(settings.analytics_path)
    try:
        load_rows(settings, tmp_path / "in")
        refresh_analytics(settings)  # would raise WarehouseBusyError if the reader's lock were in the way
        with duckdb.connect(str(settings.analytics_path), read_only=True) as con:
            assert con.execute("select count(*) from students").fetchall() == [(3,)]
        assert ask(reader, "select count(*) from students") == "0"  # its session still sees its snapshot
    finally:
        close(reader)
    assert not list(settings.home.glob(".analytics-*"))  # no staging file left behind


def test_a_failed_refresh_leaves_the_published_file_alone(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_rows(settings, tmp_path / "in")
    refresh_analytics(settings)
    before = settings.analytics_path.read_bytes()

    def broken(con: duckdb.DuckDBPyConnection, target: Path) -> dict[str, int]:
        target.write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr("warehouse.analytics.build_snapshot", broken)
    with pytest.raises(OSError, match="disk full"):
        refresh_analytics(settings)
    assert settings.analytics_path.read_bytes() == before
    assert not list(settings.home.glob(".analytics-*"))


# A reader in another process: opens the file read-only once and answers queries on its session.
READER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("open", flush=True)
for line in sys.stdin:
    print(con.execute(line).fetchall()[0][0], flush=True)
"""


def hold_open(path: Path) -> subprocess.Popen[str]:
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert reader.stdout is not None and reader.stdout.readline().strip() == "open"
    return reader


def ask(reader: subprocess.Popen[str], query: str) -> str:
    assert reader.stdin is not None and reader.stdout is not None
    reader.stdin.write(query + "\n")
    reader.stdin.flush()
    return reader.stdout.readline().strip()


def close(reader: subprocess.Popen[str]) -> None:
    if reader.stdin is not None:
        reader.stdin.close()
    reader.wait(timeout=30)
