"""One student, one answer: every path scores the real students of a year exactly as `/predict` does.

`/predict` over real HTTP, `passos score` (``risk_scores`` and the views over it), `passos
batch-score` on local threads and on a Dask cluster: the same label ("unknown" included), the same
score (within 1e-6), and the same variant and segment for every student.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from modeling.batch import read_scores
from modeling.registry import Registry
from passos.settings import Settings, get_settings
from serving.schemas import PREDICT_EXAMPLES
from tests.support.service import start_server

pytestmark = [pytest.mark.integration, pytest.mark.data, pytest.mark.slow]

YEAR = 2024  # the year `passos score` scores by default; a student in it lacks the school type
# The students table's raw fields a client sends (the service derives the rest, as the views do).
RAW = (
    "fase",
    "idade",
    "genero",
    "instituicao",
    "ano_ingresso",
    "data_nasc",
    "ano_nasc",
    "iaa",
    "ieg",
    "ips",
    "ipp",
    "ida",
    "ipv",
    "mat",
    "por",
    "ing",
)
THIS_YEAR = ("defasagem", "ian", "inde")
LAST_YEAR = ("prev_defasagem", "prev_inde", "prev_ida")


class Answer(NamedTuple):
    """What a path says of one student; ``variant`` and ``segment`` are None where the path does not say."""

    label: str
    score: float | None
    variant: str | None = None
    segment: str | None = None


@pytest.fixture(scope="module")
def home(pipeline: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A copy of the trained home (the paths below write scores into its warehouse)."""
    copy = tmp_path_factory.mktemp("one-answer") / "home"
    shutil.copytree(pipeline["settings"].home, copy, ignore=shutil.ignore_patterns("prefect", "*.lock"))
    patch = pytest.MonkeyPatch()
    patch.setenv("PASSOS_HOME", str(copy))
    get_settings.cache_clear()
    try:
        yield get_settings()
    finally:
        patch.undo()
        get_settings.cache_clear()


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
    ) as cluster:
        yield cluster.scheduler_address


def requests_of_year(settings: Settings, task: str, year: int) -> dict[str, dict[str, Any]]:
    """Per student of ``year``, the request a client holding the warehouse's raw fields would send."""
    fields = RAW + (THIS_YEAR if task == "next_year" else ())
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        rows = con.execute(
            f"select s.ra, s.year, {', '.join(f's.{f}' for f in fields)}, {', '.join(f'b.{f}' for f in LAST_YEAR)} "
            "from students as s inner join feature_base as b on b.ra = s.ra and b.year = s.year "
            "where s.year = ? order by s.ra",
            [year],
        ).fetchall()
    names = ("ra", "year", *fields, *LAST_YEAR)
    out = {}
    for row in rows:
        record = dict(zip(names, row, strict=True))
        ra = str(record.pop("ra"))
        body = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in record.items() if v is not None}
        out[ra] = body | {"task": task}
    return out


def answers_over_http(settings: Settings, requests: dict[str, dict[str, Any]]) -> dict[str, Answer]:
    served = Settings(home=settings.home, rate_limit_per_s=0)
    server, thread, url = start_server(served)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            out = {}
            for ra, body in requests.items():
                response = client.post("/predict", json=body)
                assert response.status_code == 200, (ra, response.text)
                answer = response.json()
                out[ra] = Answer(answer["risk_label"], answer["risk_score"], answer["variant"], answer["segment"])
                now = body.get("defasagem")  # the operating point of the student's own segment labelled it
                segment = None if now is None or answer["variant"] is None else "behind" if now < 0 else "on_track"
                assert answer["segment"] == (segment if body["task"] == "next_year" else None), (ra, answer)
            examples = {name: client.post("/predict", json=e["value"]).json() for name, e in PREDICT_EXAMPLES.items()}
            described = client.get("/model").json()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    for task in ("current", "next_year"):  # the published complete examples get the best model
        assert examples[task]["variant"] == "full" and examples[task]["upgrade"] is None, examples[task]
        served_path = described[task]["served_path"]  # /model reports the figures of the served path
        assert 0.0 <= served_path["shares"]["unknown"] < 0.2 and served_path["recall"] <= served_path["recall_scored"]
    before = described["next_year"]["served_path"]["before"]  # and each segment before and after
    assert {t["group"] for t in described["next_year"]["served_path"]["targets"]} == {"all", "on_track_now"}
    assert set(before["by_now"]) == {"behind_now", "on_track_now"}
    return out


def _value(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def labelled(frame: pd.DataFrame) -> dict[str, Answer]:
    """Per student, the label and score of a path's rows, with the variant and segment when it has them."""
    routed = {"variant", "segment"} <= set(frame.columns)
    return {
        str(row["ra"]): Answer(
            row["risk_label"],
            None if _value(row["risk_score"]) is None else float(row["risk_score"]),
            _value(row["variant"]) if routed else None,
            _value(row["segment"]) if routed else None,
        )
        for row in frame.to_dict("records")
    }


def assert_same(reference: dict[str, Answer], other: dict[str, Answer], path: str, *, routed: bool = True) -> None:
    """``other`` gives every student of ``reference`` its label and score, and its variant and segment when ``routed``."""
    assert sorted(other) == sorted(reference), path
    labels = [ra for ra in reference if reference[ra].label != other[ra].label]
    assert not labels, f"{path}: {len(labels)} students labelled differently, e.g. {labels[:5]}"
    for ra, answer in reference.items():
        theirs = other[ra].score
        if answer.label == "unknown":
            assert answer.score is None and theirs is None, (path, ra)
        else:
            assert theirs is not None and abs(theirs - answer.score) <= 1e-6, (path, ra, answer.score, theirs)
    if routed:
        routes = [ra for ra in reference if reference[ra][2:] != other[ra][2:]]
        assert not routes, (
            f"{path}: {len(routes)} students routed differently, e.g. {[(ra, reference[ra], other[ra]) for ra in routes[:3]]}"
        )


@pytest.mark.parametrize("task", ["current", "next_year"])
def test_every_path_gives_every_student_of_a_year_the_api_answer(
    home: Settings, dask_address: str, tmp_path: Path, task: str
) -> None:
    requests = requests_of_year(home, task, YEAR)
    api = answers_over_http(home, requests)
    runner = CliRunner()

    scored = runner.invoke(app, ["score", "--task", task, "--year", str(YEAR), "--out", str(tmp_path / "s.csv")])
    assert scored.exit_code == 0, scored.output
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        table = con.execute(
            "select ra, risk_label, risk_score, variant, segment from risk_scores where task = ? and year = ?",
            [task, YEAR],
        ).df()
        outcomes = con.execute(
            "select ra, risk_label, risk_score from outcomes where task = ? and year = ?", [task, YEAR]
        ).df()
        # The analysts' views show the variant (and next_year's segment) that risk_scores holds.
        shown = (
            "select ra, risk_label, risk_score, variant, segment from call_list where risk_label != 'not scored'"
            if task == "next_year"
            else "select ra, 'high' as risk_label, risk_now as risk_score, variant_now as variant, "
            "null as segment from at_risk where flagged_by in ('current', 'both')"
        )
        view = con.execute(shown).df()
    assert_same(api, labelled(table), "passos score")
    assert_same({ra: api[ra] for ra in outcomes["ra"]}, labelled(outcomes), "the outcomes view", routed=False)
    assert len(view) > 0 and set(view["variant"]) >= {"full"}, view
    assert_same({ra: api[ra] for ra in view["ra"]}, labelled(view), "call_list" if task == "next_year" else "at_risk")

    for where, extra in (("local", []), ("dask", ["--dask-address", dask_address])):
        out = tmp_path / f"batch-{where}"
        batch = runner.invoke(
            app,
            ["batch-score", "--task", task, "--year", str(YEAR), "--out", str(out), "--partition-rows", "300", *extra],
        )
        assert batch.exit_code == 0, batch.output
        summary = json.loads(next(line for line in batch.output.splitlines() if line.startswith("{")))
        assert summary["rows"] == len(requests)
        assert_same(api, labelled(read_scores(out)), f"passos batch-score ({where})")

    counts = pd.Series([answer.label for answer in api.values()]).value_counts().to_dict()
    assert counts.get("high", 0) > 0 and counts.get("low", 0) > 0 and counts.get("unknown", 0) >= 1, counts


def test_the_api_reference_names_the_fields_the_served_variants_need(home: Settings) -> None:
    """The API reference's table of required fields (docs/api.md) is the trained models' own."""
    from modeling.scoring import request_fields
    from modeling.variants import readme_fields_table, required_by_task

    registry = Registry.from_settings(home)
    must_send = {
        task: {
            name: request_fields(v["required"])
            for name, v in registry.metadata(task, registry.champion(task))["variants"].items()
        }
        for task in ("current", "next_year")
    }
    readme = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text(encoding="utf-8")
    assert required_by_task(readme) == must_send
    assert readme_fields_table(must_send) in readme
