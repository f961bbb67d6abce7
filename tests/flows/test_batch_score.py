"""Batch scoring in partitions: the pure pieces, then the flow on local threads and on a real Dask cluster."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.batch_score import batch_score_flow
from modeling.batch import MANIFEST, check_columns, parquet_files, plan_partitions, read_scores, score_table
from modeling.registry import Registry
from modeling.scoring import score_frame
from passos.errors import ModelNotFoundError, SourceError
from passos.settings import Settings
from tests.factories import make_feature_frame, register_model


def write_parquet(frame: pd.DataFrame, path: Path, *, row_group_size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group_size)
    return path


@pytest.fixture(scope="module")
def students() -> pd.DataFrame:
    """3,000 synthetic student-years with the current task's features (no target: it is not read)."""
    frame = make_feature_frame("current", years=(2022, 2023, 2024), n_per_year=1000, seed=3)
    frame["ra"] = [f"S{i:05d}" for i in range(len(frame))]  # unique ids, so rows can be matched
    return frame.drop(columns=["target"])


@pytest.fixture
def champion(settings: Settings) -> str:
    registry = Registry.from_settings(settings)
    version = register_model(registry, "current", kind="lightgbm", seed=1)
    registry.promote("current", version, reason="test")
    return version


def test_partitions_group_whole_row_groups_in_file_order(students: pd.DataFrame, tmp_path: Path) -> None:
    write_parquet(students.iloc[:1000], tmp_path / "in" / "a.parquet", row_group_size=100)
    write_parquet(students.iloc[1000:1150], tmp_path / "in" / "b.parquet", row_group_size=100)
    files = parquet_files(tmp_path / "in")
    assert [f.name for f in files] == ["a.parquet", "b.parquet"]
    parts = plan_partitions(files, partition_rows=250)
    assert [(Path(p.path).name, p.row_groups, p.rows) for p in parts] == [
        ("a.parquet", (0, 1, 2), 300),
        ("a.parquet", (3, 4, 5), 300),
        ("a.parquet", (6, 7, 8), 300),
        ("a.parquet", (9,), 100),
        ("b.parquet", (0, 1), 150),
    ]
    assert [p.index for p in parts] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="partition_rows"):
        plan_partitions(files, partition_rows=0)


def test_bad_inputs_are_named(students: pd.DataFrame, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match=r"no \.parquet files"):
        parquet_files(tmp_path / "empty")
    with pytest.raises(SourceError, match="no such file"):
        parquet_files(tmp_path / "nope.parquet")
    short = write_parquet(students.drop(columns=["ida", "ra"]).head(10), tmp_path / "short.parquet", row_group_size=10)
    with pytest.raises(SourceError, match=r"short\.parquet: missing column\(s\) ra, ida"):
        check_columns([short], "current")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(SourceError, match="not a readable Parquet file"):
        check_columns([broken], "current")


def test_score_table_agrees_with_score_frame(settings: Settings, champion: str, students: pd.DataFrame) -> None:
    from datetime import UTC, datetime

    model, _ = Registry.from_settings(settings).load_checked("current", champion)
    rows = students.head(400)
    table = score_table(
        model,
        champion,
        pa.Table.from_pandas(rows, preserve_index=False),
        task="current",
        scored_at=datetime.now(UTC),
        reasons=True,
    ).to_pandas()
    reference = score_frame(model, champion, rows, task="current").set_index("ra").loc[rows["ra"]]
    assert table["ra"].tolist() == rows["ra"].tolist()  # input order, not ranked
    np.testing.assert_allclose(table["risk_score"], reference["risk_score"], rtol=0, atol=1e-12)
    assert table["risk_label"].tolist() == reference["risk_label"].tolist()
    assert table["reasons"].tolist() == reference["reasons"].tolist()
    assert set(table["risk_label"]) == {"high", "low"}


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[object]:
    """A real two-process Dask cluster on loopback."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
    ) as cluster:
        yield cluster


@pytest.mark.integration
def test_dask_cluster_gives_the_local_result(
    prefect_harness: None,
    settings: Settings,
    champion: str,
    students: pd.DataFrame,
    tmp_path: Path,
    dask_cluster: object,
) -> None:
    from distributed import Client

    source = write_parquet(students, tmp_path / "students.parquet", row_group_size=250)
    local = batch_score_flow(task="current", source=str(source), out=str(tmp_path / "local"), partition_rows=500)
    address = dask_cluster.scheduler_address  # type: ignore[attr-defined]
    remote = batch_score_flow(
        task="current", source=str(source), out=str(tmp_path / "dask"), partition_rows=500, dask_address=address
    )
    assert local["rows"] == remote["rows"] == 3000 and local["partitions"] == remote["partitions"] == 6
    assert local["model_version"] == remote["model_version"] == champion
    assert local["high_risk"] == remote["high_risk"] > 0
    a, b = read_scores(local["out"]), read_scores(remote["out"])
    assert a["ra"].tolist() == students["ra"].tolist()
    pd.testing.assert_frame_equal(a.drop(columns=["scored_at"]), b.drop(columns=["scored_at"]))
    # the partitions really ran in the worker processes: each one loaded the champion there
    with Client(address) as client:
        loaded = client.run(lambda: importlib.import_module("modeling.batch")._champion_model.cache_info().currsize)
    assert sum(loaded.values()) >= 1 and len(loaded) == 2
    manifest = json.loads((Path(remote["out"]) / MANIFEST).read_text())
    written = pd.read_parquet(remote["out"])
    assert manifest["rows"] == 3000 and written.shape == (3000, 9)
    assert {"variant", "segment"} <= set(written.columns)  # which model answered, as /predict says


@pytest.mark.integration
def test_the_output_is_replaced_whole_and_never_half_written(
    prefect_harness: None, settings: Settings, champion: str, students: pd.DataFrame, tmp_path: Path
) -> None:
    source = write_parquet(students.head(600), tmp_path / "in.parquet", row_group_size=200)
    out = tmp_path / "scores"
    first = batch_score_flow(task="current", source=str(source), out=str(out), partition_rows=200, reasons=True)
    assert first["partitions"] == 3 and len(list(out.glob("part-*.parquet"))) == 3
    assert all(isinstance(json.loads(r), list) for r in read_scores(out)["reasons"])
    smaller = write_parquet(students.head(100), tmp_path / "small.parquet", row_group_size=100)
    second = batch_score_flow(task="current", source=str(smaller), out=str(out), partition_rows=200)
    assert second["rows"] == 100 and len(read_scores(out)) == 100 and "reasons" not in read_scores(out)
    foreign = tmp_path / "not-ours"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not a batch-score output"):
        batch_score_flow(task="current", source=str(source), out=str(foreign))
    assert (foreign / "keep.txt").read_text() == "precious"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]  # staging cleaned up


@pytest.mark.integration
def test_refuses_without_a_champion_or_with_an_unknown_task(
    prefect_harness: None, settings: Settings, students: pd.DataFrame, tmp_path: Path
) -> None:
    source = write_parquet(students.head(10), tmp_path / "in.parquet", row_group_size=10)
    with pytest.raises(ModelNotFoundError, match="no champion for task 'current'"):
        batch_score_flow(task="current", source=str(source))
    with pytest.raises(ValueError, match="unknown task 'both'"):
        batch_score_flow(task="both", source=str(source))


@pytest.mark.integration
def test_the_latest_warehouse_year_through_the_cli(
    prefect_harness: None, settings: Settings, champion: str, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from cli.app import app
    from warehouse.connection import connect
    from warehouse.loader import ingest
    from warehouse.sources import discover

    folder = tmp_path / "in"
    folder.mkdir()
    header = "RA,Fase,Idade,Gênero,IAA,IEG,IPS,IDA,IPV,IAN,Defasagem,Fase Ideal"
    (folder / "pede_2030.csv").write_text(f"{header}\nA,ALFA,8,Menina,8,7,6,5,7,5,-1,ALFA\n", encoding="utf-8")
    rows = "\n".join(f"R{i},{i % 8},{10 + i % 8},Menino,6,5,7,{i % 10},6,5,0,{i % 8}" for i in range(40))
    (folder / "pede_2031.csv").write_text(f"{header}\n{rows}\n", encoding="utf-8")
    with connect(settings) as con:
        ingest(con, "test", discover([folder]))
    out = tmp_path / "scores"
    result = CliRunner().invoke(app, ["batch-score", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(next(line for line in result.output.splitlines() if line.startswith("{")))
    assert summary["rows"] == 40 and summary["source"] == "warehouse features_current, year 2031"
    scores = read_scores(out)
    assert sorted(scores["ra"]) == sorted(f"R{i}" for i in range(40)) and set(scores["year"]) == {2031}
    assert not (out / "_input").exists()
    assert read_scores(tmp_path / "nowhere").empty


@pytest.mark.integration
def test_an_empty_warehouse_is_named(prefect_harness: None, settings: Settings, champion: str) -> None:
    from warehouse.connection import connect

    with connect(settings):
        pass  # creates the schema, no students
    with pytest.raises(SourceError, match="no students in the warehouse"):
        batch_score_flow(task="current")
    assert not list(settings.home.glob("batch_scores/.tmp-*"))
