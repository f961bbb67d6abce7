"""Data tests on the real PEDE files in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.featuresets import derive, encode, encode_frame, feature_names
from passos.settings import Settings
from warehouse import loader
from warehouse.connection import connect
from warehouse.sources import discover

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def loaded(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings(home=tmp_path_factory.mktemp("real"))
    with connect(settings) as con:
        results = loader.ingest(con, "real", discover([real_data]))
    assert {(r.year, r.status) for r in results} >= {(2022, "loaded"), (2023, "loaded"), (2024, "loaded")}
    return settings


def q(settings: Settings, query: str) -> list[tuple[object, ...]]:
    with connect(settings, read_only=True) as con:
        return con.execute(query).fetchall()


def test_three_years_load_completely(loaded: Settings) -> None:
    assert q(loaded, "select year, count(*) from students group by 1 order by 1") == [
        (2022, 860),
        (2023, 1014),
        (2024, 1156),
    ]
    assert q(loaded, "select count(*) from quarantine") == [(0,)]


def test_every_row_has_fase_idade_gender_and_target(loaded: Settings) -> None:
    assert q(loaded, "select count(*) from students where fase is null or idade is null or genero is null") == [(0,)]
    assert q(loaded, "select count(*) from students where defasagem is null") == [(0,)]


def test_share_behind_matches_the_data_readme(loaded: Settings) -> None:
    rows = q(loaded, "select year, round(avg((defasagem < 0)::int), 3) from students group by 1 order by 1")
    assert rows == [(2022, 0.699), (2023, 0.544), (2024, 0.462)]


def test_defasagem_is_fase_minus_fase_ideal(loaded: Settings) -> None:
    # Two 2024 rows disagree in the source itself (3A with Fase 3 ideal and defasagem 3).
    assert q(loaded, "select count(*) from students where defasagem <> fase - fase_ideal") == [(2,)]


def test_known_quirks_are_harmonised(loaded: Settings) -> None:
    assert q(loaded, "select min(idade), max(idade) from students where year = 2023") == [(7, 26)]
    assert q(loaded, "select count(*) from students where year = 2024 and fase = 9") == [(38,)]
    assert q(loaded, "select distinct genero from students order by 1") == [("F",), ("M",)]
    assert {r[0] for r in q(loaded, "select distinct instituicao from students")} <= {
        "publica",
        "privada_bolsa",
        "privada",
        "universidade",
        "concluiu",
        "outra",
        None,
    }
    assert q(loaded, "select count(*) from data_quality where raw = 'INCLUIR'") == [(76,)]
    assert q(loaded, "select max(iaa) from students") == [(10.0,)]


def test_students_recur_across_years(loaded: Settings) -> None:
    both = "select count(*) from students a join students b on a.ra = b.ra and b.year = a.year + 1 where a.year = {}"
    assert q(loaded, both.format(2022)) == [(600,)]
    assert q(loaded, both.format(2023)) == [(765,)]


def test_feature_views_agree_with_the_python_definition(loaded: Settings) -> None:
    with connect(loaded, read_only=True) as con:
        current = con.execute("select * from features_current").df()
        students = con.execute("select * from students").df()
        next_year = con.execute("select * from features_next_year where target is not null").df()
    assert len(current) == 3030 and len(next_year) == 600 + 765
    raw = students.set_index(["ra", "year"])
    sample = current.sample(200, random_state=0)
    records = []
    for ra, year in zip(sample["ra"], sample["year"], strict=True):
        record = raw.loc[(ra, year)].to_dict()
        previous = raw.loc[(ra, year - 1)].to_dict() if (ra, year - 1) in raw.index else {}
        record |= {
            "prev_defasagem": previous.get("defasagem"),
            "prev_inde": previous.get("inde"),
            "prev_ida": previous.get("ida"),
        }
        records.append(derive({k: (None if v != v else v) for k, v in record.items()}, year=year))
    import numpy as np

    np.testing.assert_allclose(encode(records, "current"), encode_frame(sample, "current"), equal_nan=True)
    assert list(current.columns) == ["ra", "year", *feature_names("current"), "target"]
