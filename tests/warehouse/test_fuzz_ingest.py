"""Hostile input files: each gets a clear error or quarantined rows; nothing crashes, nothing is lost."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from passos.errors import SourceError
from passos.settings import Settings
from warehouse import loader
from warehouse.connection import connect
from warehouse.sources import discover, read_csv

HEADER = "RA,Fase,Idade,Gênero,IAA,IEG,IPS,IDA,IPV,IAN,Defasagem,Fase Ideal"
ROW = "RA-{i},FASE 2,11,Feminino,8.5,7,6,5.5,7.1,5,-1,Fase 3 (7º e 8º ano)"


def good_text(n: int = 20) -> str:
    return "\n".join([HEADER, *(ROW.format(i=i) for i in range(n))]) + "\n"


def load(settings: Settings, folder: Path) -> list[loader.LoadResult]:
    with connect(settings) as con:
        return loader.ingest(con, "fuzz", discover([folder]))


def invariant_holds(results: list[loader.LoadResult]) -> None:
    for result in results:
        if result.status == "loaded":
            assert result.rows_read == result.rows_loaded + result.rows_quarantined, result
        if result.status == "failed":
            assert result.note  # a message that says what is wrong


@pytest.mark.parametrize(
    ("name", "content", "expect"),
    [
        ("truncated mid-row", good_text().encode()[:-25], "loaded"),
        ("truncated mid-header", good_text().encode()[:30], "failed"),
        ("latin-1", good_text().encode("latin-1"), "failed"),
        ("semicolons", good_text().replace(",", ";").encode(), "failed"),
        ("binary garbage", bytes(random.Random(1).randrange(256) for _ in range(4096)), "failed"),
        ("formulas in cells", good_text().replace("8.5", "=1+1").replace("RA-3,", "=HYPERLINK(1),").encode(), "loaded"),
        (
            "huge field",
            (HEADER + "\n" + ROW.format(i=0).replace("Feminino", "x" * 2_000_000) + "\n").encode(),
            "failed",
        ),
        ("only a header", (HEADER + "\n").encode(), "loaded"),
        ("windows newlines and BOM", ("\ufeff" + good_text().replace("\n", "\r\n")).encode(), "loaded"),
    ],
)
def test_hostile_files(settings: Settings, tmp_path: Path, name: str, content: bytes, expect: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "pede_2030.csv").write_bytes(content)
    results = load(settings, folder)
    assert [r.status for r in results] == [expect], (name, results)
    invariant_holds(results)


def test_formulas_are_kept_as_text_or_reported(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "pede_2030.csv").write_text(good_text().replace("8.5", "=1+1"), encoding="utf-8")
    (result,) = load(settings, folder)
    assert result.rows_loaded == 20 and result.dq_issues == 20  # "=1+1" is not a number: null + an issue
    with connect(settings, read_only=True) as con:
        assert con.execute("select count(*) from students where iaa is not null").fetchall() == [(0,)]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    rows=st.lists(
        st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12), min_size=0, max_size=14),
        max_size=15,
    )
)
def test_random_cells_never_crash_and_keep_the_invariant(
    rows: list[list[str]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADER.split(","))
    writer.writerows(rows)
    folder = tmp_path_factory.mktemp("fz")
    (folder / "pede_2030.csv").write_text(buffer.getvalue(), encoding="utf-8")
    home = tmp_path_factory.mktemp("home")
    results = load(Settings(home=home), folder)
    invariant_holds(results)
    if results[0].status == "loaded":
        assert results[0].rows_read == sum(1 for r in rows if any(c.strip() for c in r))


def test_read_csv_reports_malformed_quoting(tmp_path: Path) -> None:
    path = tmp_path / "pede_2030.csv"
    path.write_bytes(b'RA,Fase\n"unterminated,1\n' + b"x" * 10)
    try:
        table = read_csv(path)
    except SourceError as error:
        assert "pede_2030.csv" in str(error)
    else:
        assert table.rows  # parsed as one long quoted field: harmonisation will quarantine it
