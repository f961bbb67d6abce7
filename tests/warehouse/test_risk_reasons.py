"""The reasons in words have one definition (the view risk_reasons), and risk_scores keeps the variant and segment.

at_risk and call_list read their words from risk_reasons, so they word a student alike; a
warehouse file whose risk_scores was made without ``variant`` and ``segment`` gets them, in the
same place as a new one, the first time it is opened for writing.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd

from passos.settings import Settings
from warehouse import loader
from warehouse.analytics import refresh_analytics
from warehouse.connection import connect, replace_rows
from warehouse.contracts import CONTRACTS
from warehouse.sources import discover

HEADER = "RA,Fase,Turma,Idade,Gênero,IAA,IEG,IPS,IDA,IPV,IAN,INDE 2030,Defasagem,Fase Ideal,Instituição de ensino"
# ra, defasagem: N on track now (newly at risk), B behind now (on the call list), K on track and low.
SHEET = (("N", 0), ("B", -1), ("K", 1))


def reasons(*items: tuple[str, object, float]) -> str:
    return json.dumps([{"feature": f, "value": v, "contribution": c} for f, v, c in items])


# Per student and task: score, label, variant, segment, reasons (one that lowered the risk among them).
SCORES = {
    ("N", "current"): (0.2, "low", "core", None, reasons(("ida", 9.0, 0.1))),
    ("N", "next_year"): (
        0.8,
        "high",
        "full",
        "on_track",
        reasons(("ipv", 5.0, 0.6), ("ida", 9.5, -0.3), ("instituicao", "publica", 0.2), ("mat", None, 0.1)),
    ),
    ("B", "current"): (0.9, "high", "full", None, reasons(("ida", 2.0, 0.7), ("ipv", 8.0, -0.1))),
    ("B", "next_year"): (0.7, "high", "core", "behind", reasons(("defasagem", -1.0, 0.5), ("ieg", 9.0, -0.4))),
    ("K", "next_year"): (0.1, "low", "full", "on_track", reasons(("ida", 9.0, -0.5))),
}
# A risk_scores table as a warehouse made without the variant and segment columns holds it.
RISK_SCORES_WITHOUT_VARIANT = """
create table risk_scores (
    ra varchar not null,
    year integer not null,
    task varchar not null,
    model_version varchar not null,
    risk_score double,
    risk_label varchar not null,
    rank integer not null,
    reasons varchar,
    scored_at timestamp not null,
    primary key (ra, year, task)
)
"""


def load(settings: Settings, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [f"{ra},FASE 3,3A,12,Feminino,8,7,6,5,7,10,8.0,{gap},Fase 3,Escola Pública" for ra, gap in SHEET]
    (folder / "pede_2030.csv").write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
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
                "scored_at": datetime(2030, 3, 1),
                "variant": variant,
                "segment": segment,
            }
            for (ra, task), (score, label, variant, segment, why) in SCORES.items()
        ]
    )
    with connect(settings) as con:
        loader.ingest(con, "run", discover([folder]))
        replace_rows(con, "risk_scores", frame)


def rows(path: Path, query: str) -> list[dict[str, object]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(query).df().astype(object).where(lambda f: f.notna(), None).to_dict("records")


def test_at_risk_and_the_call_list_word_a_student_alike(settings: Settings, tmp_path: Path) -> None:
    load(settings, tmp_path / "in")
    refresh_analytics(settings)
    path = settings.analytics_path
    at_risk = {r["ra"]: r for r in rows(path, "select * from at_risk")}
    called = {r["ra"]: r for r in rows(path, "select * from call_list")}
    worded = {(r["ra"], r["task"]): r["reasons"] for r in rows(path, "select * from risk_reasons")}
    assert set(worded) == set(SCORES)  # one row per risk_scores row

    # N is flagged by next_year only and newly at risk: both views show next_year's words, the same words.
    assert at_risk["N"]["flagged_by"] == "next_year" and called["N"]["category"] == "newly at risk"
    assert at_risk["N"]["reasons"] == called["N"]["reasons"] == worded[("N", "next_year")]
    assert called["N"]["reasons"] == (
        "Turning point (IPV) indicator, 0-10 = 5.0; School type (collapsed) = publica; Maths grade, 0-10 = unknown"
    )  # the reason that lowered the risk (ida, -0.3) is in neither
    # B: at_risk shows the current task's words (it flags B too), the call list next_year's; each is risk_reasons'.
    assert at_risk["B"]["flagged_by"] == "both" and called["B"]["category"] == "behind now"
    assert at_risk["B"]["reasons"] == worded[("B", "current")] == "Learning (IDA) indicator, 0-10 = 2.0"
    assert (
        called["B"]["reasons"] == worded[("B", "next_year")] == "This year's setback (years; negative = behind) = -1.0"
    )
    assert worded[("K", "next_year")] == ""  # nothing raised K's risk


def test_the_views_show_which_variant_and_segment_scored(settings: Settings, tmp_path: Path) -> None:
    load(settings, tmp_path / "in")
    refresh_analytics(settings)
    path = settings.analytics_path
    at_risk = {r["ra"]: r for r in rows(path, "select * from at_risk")}
    called = {r["ra"]: r for r in rows(path, "select * from call_list")}
    assert {ra: (r["variant_now"], r["variant_next_year"], r["segment_next_year"]) for ra, r in at_risk.items()} == {
        "N": ("core", "full", "on_track"),
        "B": ("full", "core", "behind"),
    }
    assert {ra: (r["variant"], r["segment"]) for ra, r in called.items()} == {
        "N": ("full", "on_track"),
        "B": ("core", "behind"),
    }


def test_a_warehouse_made_without_variant_and_segment_gets_them_when_opened(settings: Settings, tmp_path: Path) -> None:
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute(RISK_SCORES_WITHOUT_VARIANT)
        con.execute("insert into risk_scores values ('N', 2029, 'next_year', 'v-old', 0.8, 'high', 1, '[]', now())")
    with connect(settings) as con:
        columns = tuple(r[0] for r in con.execute("describe risk_scores").fetchall())
        old = con.execute("select ra, model_version, variant, segment from risk_scores").fetchall()
        comments = dict(
            con.execute(
                "select column_name, comment from duckdb_columns() "
                "where table_name = 'risk_scores' and column_name in ('variant', 'segment')"
            ).fetchall()
        )
    assert columns == CONTRACTS["risk_scores"]  # the same columns, in the same order, as a new warehouse
    assert old == [("N", "v-old", None, None)]  # the rows already there are kept, without a variant
    assert comments["variant"].startswith("The served variant") and comments["segment"].startswith("Whose operating")
    with connect(settings):  # a second open finds them there and changes nothing
        pass

    load(settings, tmp_path / "in")  # scores written afterwards carry them
    refresh_analytics(settings)
    called = {r["ra"]: r for r in rows(settings.analytics_path, "select ra, variant, segment from call_list")}
    assert (called["N"]["variant"], called["N"]["segment"]) == ("full", "on_track")
