"""The whole pipeline on the real data under a real Prefect harness, then the CLI around the registry."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from features.featuresets import encode_frame
from modeling.registry import Registry
from passos.cli import app
from passos.settings import Settings, get_settings

pytestmark = [pytest.mark.integration, pytest.mark.data]


def query(settings: Settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_pipeline_loads_trains_scores_and_reports(pipeline: dict) -> None:
    settings: Settings = pipeline["settings"]
    result = pipeline["result"]
    assert sum(r["rows_loaded"] for r in result["ingest"] if r["status"] == "loaded") == 3030
    registry = Registry.from_settings(settings)
    for task in ("current", "next_year"):
        champion = registry.champion(task)
        assert champion is not None
        folder = registry.path(task, champion)
        assert (folder / "card.md").read_text().startswith(f"# Model card: `{task}`, version `{champion}`")
        assert {p.name for p in (folder / "plots").iterdir()} >= {
            "roc.png",
            "pr.png",
            "calibration.png",
            "importance.png",
        }
        meta = registry.metadata(task, champion)
        assert meta["protocol"] == "out_of_time" and meta["gate"]["accepted"] is True
        assert set(meta["metrics"]["test"]) >= {
            "recall",
            "precision",
            "f1",
            "f2",
            "roc_auc",
            "pr_auc",
            "brier",
            "at_budget",
        }
        assert set(meta["metrics"]["candidates"]) == {"lightgbm", "logistic", "rule"}
    assert query(settings, "select task, count(*) from risk_scores group by 1 order by 1") == [
        ("current", 1156),
        ("next_year", 1156),
    ]
    top = query(
        settings, "select rank, risk_score, reasons from risk_scores where task = 'current' order by rank limit 2"
    )
    assert top[0][0] == 1 and top[0][1] >= top[1][1] and isinstance(json.loads(top[0][2]), list)
    assert query(settings, "select count(*) from model_registry where is_champion") == [(2,)]
    reports = query(settings, "select task, verdict, report_path from drift_reports")
    assert {r[0] for r in reports} == {"current", "next_year"}
    assert all(Path(r[2]).is_file() for r in reports)
    index = (settings.reports_dir / "index.html").read_text()
    assert all(Path(r[2]).parent.name in index for r in reports)


def test_drift_right_after_the_pipeline_recommends_no_retraining(
    pipeline: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run` then `passos drift`: the champions were just fitted on everything there is."""
    settings: Settings = pipeline["settings"]
    assert pipeline["state"].is_completed(), pipeline["state"]
    verdicts = {r["task"]: r["verdict"] for r in pipeline["result"]["drift"]}
    assert verdicts["current"] == "no new data since training"  # 2024 is one of its training years
    assert verdicts["next_year"] in ("stable", "watch")  # 2024's inputs are new, but no newer labels exist
    monkeypatch.setenv("PASSOS_HOME", str(settings.home))
    get_settings.cache_clear()
    again = CliRunner().invoke(app, ["drift"])
    assert again.exit_code == 0 and "nothing new since the last check" in again.output, again.output
    forced = CliRunner().invoke(app, ["drift", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "retrain recommended" not in forced.output and "no new data since training" in forced.output
    get_settings.cache_clear()


def test_the_served_artifact_finds_its_students_at_its_own_threshold(pipeline: dict) -> None:
    """The model clients get (refitted on every labelled year), not the candidate: recall on each year."""
    settings: Settings = pipeline["settings"]
    registry = Registry.from_settings(settings)
    for task in ("current", "next_year"):
        model, meta = registry.load_checked(task, registry.champion(task))
        with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
            frame = con.execute(f"select * from features_{task} where target is not null").df()
        scores = model.predict_proba(encode_frame(frame, task))
        for year in sorted(frame["year"].unique()):
            rows = (frame["year"] == year).to_numpy()
            behind = frame.loc[rows, "target"].to_numpy() == 1
            recall = float((scores[rows][behind] >= model.threshold).mean())
            assert recall >= settings.recall_target, (task, year, recall)
        assert scores.max() >= 0.5 and scores.min() < model.threshold  # the score range is used
        assert meta["artifact_check"]["passed"] is True
        assert meta["reliability"]["test_year"] and meta["reliability"]["served_oof"]


def test_current_meets_its_out_of_time_targets(pipeline: dict) -> None:
    """Trained on 2022-2023 with the threshold set without 2024, tested on 2024 (see README: 2024 has shaped the design)."""
    registry = Registry.from_settings(pipeline["settings"])
    test = registry.metadata("current", registry.champion("current"))["metrics"]["test"]
    assert test["recall"] >= 0.90 and test["precision"] >= 0.80 and test["roc_auc"] >= 0.93


def test_the_example_payload_is_never_a_false_all_clear(pipeline: dict) -> None:
    """The 2024 students, sent with the original example's six fields only, over real HTTP."""
    import httpx

    from tests.support.service import start_server

    settings: Settings = pipeline["settings"]
    fields = ("inde", "iaa", "ips", "ipp", "ipv", "fase")
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        rows = con.execute(f"select {', '.join(fields)}, defasagem < 0 from students where year = 2024").fetchall()
    students = [{k: v for k, v in zip(fields, row[:-1], strict=True) if v is not None} for row in rows]
    behind = [bool(row[-1]) for row in rows]
    server, thread, url = start_server(settings)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            answers = []
            for start in range(0, len(students), 500):
                batch = client.post("/predict/batch", json={"students": students[start : start + 500]})
                assert batch.status_code == 200, batch.text
                answers += batch.json()["predictions"]
            empty = client.post("/predict", json={}).json()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    low_behind = sum(1 for a, b in zip(answers, behind, strict=True) if b and a["risk_label"] == "low")
    assert sum(behind) == 534 and low_behind == 0  # README: too thin a payload is "unknown", never "low"
    assert empty["risk_label"] == "unknown" and empty["needed"]


def test_the_gate_rejects_a_weak_candidate_and_keeps_the_champion(pipeline: dict) -> None:
    from prefect.client.schemas.objects import StateType

    from flows.train import train_flow

    settings: Settings = pipeline["settings"]
    registry = Registry.from_settings(settings)
    before = registry.champion("current")
    patch = pytest.MonkeyPatch()
    patch.setenv("PASSOS_HOME", str(settings.home))
    patch.setenv("PASSOS_GATE_MIN_RECALL_CURRENT", "1.0")  # the task's own floor, as every run reads it
    patch.setenv("PASSOS_GATE_MIN_ROC_AUC", "0.999")  # and the ROC-AUC floor
    get_settings.cache_clear()
    try:
        state = train_flow(task="current", return_state=True)
        (outcome,) = state.result(raise_on_failure=False)
    finally:
        patch.undo()
        get_settings.cache_clear()
    assert state.type == StateType.FAILED and state.name == "Rejected" and "current" in (state.message or "")
    assert outcome["accepted"] is False and any("recall" in r for r in outcome["reasons"])
    assert any(r.startswith("roc_auc") and "0.999" in r for r in outcome["reasons"]), outcome["reasons"]
    # `passos train`'s exit 10 and REJECTED line on this same rejection: tests/deployments/test_deployments.py
    assert registry.champion("current") == before
    assert registry.metadata("current", outcome["version"])["gate"]["accepted"] is False


def test_models_cli_lists_shows_promotes_and_rolls_back(pipeline: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    settings: Settings = pipeline["settings"]
    monkeypatch.setenv("PASSOS_HOME", str(settings.home))
    get_settings.cache_clear()
    registry = Registry.from_settings(settings)
    runner = CliRunner()
    listing = runner.invoke(app, ["models", "list"])
    assert listing.exit_code == 0 and registry.champion("next_year") in listing.output
    shown = runner.invoke(app, ["models", "show", registry.champion("current")])
    assert shown.exit_code == 0 and '"protocol": "out_of_time"' in shown.output
    rejected = next(v["version"] for v in registry.list_versions("current") if v["accepted"] is False)
    refused = runner.invoke(app, ["models", "promote", rejected])
    assert refused.exit_code == 2 and "never becomes champion" in refused.output
    missing = runner.invoke(app, ["models", "show", "v-nope"])
    assert missing.exit_code == 2
    no_history = runner.invoke(app, ["models", "rollback", "--task", "next_year"])
    assert no_history.exit_code == 2 and "no previous champion" in no_history.output
    get_settings.cache_clear()


def test_score_cli_writes_a_ranked_csv(pipeline: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings: Settings = pipeline["settings"]
    monkeypatch.setenv("PASSOS_HOME", str(settings.home))
    get_settings.cache_clear()
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, ["score", "--task", "next_year", "--year", "2023", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0].startswith("ra,year,task,model_version,risk_score,risk_label,rank") and len(lines) == 1015
    get_settings.cache_clear()


def test_outcomes_of_the_2023_next_year_warnings_match_the_raw_2024_file(
    pipeline: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, real_data: Path
) -> None:
    """The `outcomes` view against an independent join of the scores with pede_2024.csv."""
    import csv

    from monitoring.outcomes import summarise

    settings: Settings = pipeline["settings"]
    monkeypatch.setenv("PASSOS_HOME", str(settings.home))
    get_settings.cache_clear()
    out = tmp_path / "warnings_2023.csv"
    scored = CliRunner().invoke(app, ["score", "--task", "next_year", "--year", "2023", "--out", str(out)])
    assert scored.exit_code == 0, scored.output
    with out.open(encoding="utf-8") as handle:
        warned = {row["ra"]: row["risk_label"] == "high" for row in csv.DictReader(handle)}
    with (real_data / "pede_2024.csv").open(encoding="utf-8") as handle:
        truth = {row["RA"]: int(row["Defasagem"]) < 0 for row in csv.DictReader(handle) if row["Defasagem"].strip()}
    both = [ra for ra in warned if ra in truth]
    hits = sum(warned[ra] and truth[ra] for ra in both)
    expected_recall = hits / sum(truth[ra] for ra in both)
    expected_precision = hits / sum(warned[ra] for ra in both)

    rows = (
        duckdb.connect(str(settings.warehouse_path), read_only=True)
        .execute("select * from outcomes where task = 'next_year' and year = 2023")
        .df()
    )
    (summary,) = summarise(rows)
    assert summary.students == len(both) and 700 < len(both) < 1014  # students seen again in 2024
    assert summary.recall == pytest.approx(expected_recall) and summary.precision == pytest.approx(expected_precision)
    assert summary.missed == sorted(ra for ra in both if truth[ra] and not warned[ra])
    shown = CliRunner().invoke(app, ["outcomes", "--task", "next_year", "--year", "2023"])
    assert shown.exit_code == 0, shown.output
    assert f"{expected_recall:.3f}" in shown.output and "in-sample" in shown.output  # the champion saw 2024
    assert "Aluno" not in shown.output  # ids only, never names
    get_settings.cache_clear()


def _new_year(real_data: Path, folder: Path, *, ipv_shift: float) -> Path:
    """pede_2025.csv: a year like 2024 (its rows, dated a year later), with IPV moved by ``ipv_shift`` points.

    Birth dates and the year of joining move a year too, so ages and years in the programme
    stay those of 2024: nothing but IPV differs from a year the training years already resemble.
    """
    import pandas as pd

    frame = pd.read_csv(real_data / "pede_2024.csv", dtype=str, keep_default_na=False)
    frame = frame.rename(columns={"INDE 2024": "INDE 2025", "Pedra 2024": "Pedra 2025"})
    born = pd.to_datetime(frame["Data de Nasc"], errors="coerce", format="mixed") + pd.DateOffset(years=1)
    frame["Data de Nasc"] = born.dt.strftime("%Y-%m-%d").fillna("")
    joined = pd.to_numeric(frame["Ano ingresso"], errors="coerce") + 1
    frame["Ano ingresso"] = joined.map(lambda v: "" if pd.isna(v) else str(int(v)))
    ipv = pd.to_numeric(frame["IPV"], errors="coerce")
    frame["IPV"] = (ipv + ipv_shift).clip(0, 10).map(lambda v: "" if pd.isna(v) else f"{v:.4f}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pede_2025.csv"
    frame.to_csv(path, index=False)
    return path


def _copy_home(settings: Settings, target: Path) -> Path:
    import shutil

    shutil.copytree(settings.home, target, ignore=shutil.ignore_patterns("batch_scores", "prefect"))
    return target


@pytest.mark.parametrize("ipv_shift", [0.0, -2.0])
def test_a_new_year_with_one_indicator_shifted_is_retrain_recommended_naming_it(
    pipeline: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, real_data: Path, ipv_shift: float
) -> None:
    """A synthetic 2025 (the 2024 students a year on); with IPV 2 points lower, drift must say retrain."""
    settings: Settings = pipeline["settings"]
    home = _copy_home(settings, tmp_path / "home")
    monkeypatch.setenv("PASSOS_HOME", str(home))
    get_settings.cache_clear()
    source = _new_year(real_data, tmp_path / "data", ipv_shift=ipv_shift)
    ingested = CliRunner().invoke(app, ["ingest", "--source", str(source)])
    assert ingested.exit_code == 0 and "loaded" in ingested.output, ingested.output
    result = CliRunner().invoke(app, ["drift", "--task", "next_year"])
    report = json.loads(result.stdout)
    (year_check,) = [r for r in report if r["current"] == "year 2025"]
    if ipv_shift == 0.0:
        assert result.exit_code == 0, result.output
        assert year_check["verdict"] != "retrain recommended", year_check["reasons"]
        assert not any(reason.startswith("feature ipv moved") for reason in year_check["reasons"])
    else:
        assert result.exit_code == 11, result.output
        assert year_check["verdict"] == "retrain recommended"
        assert year_check["reasons"][0].startswith("feature ipv moved"), year_check["reasons"]
        page = (home / "reports" / "drift" / year_check["run_id"] / "report.html").read_text()
        assert page.index("retrain recommended") < page.index("feature ipv moved") < page.index("What to do")
    get_settings.cache_clear()


def test_the_api_serves_the_reports(pipeline: dict) -> None:
    from tests.support.service import start_server

    settings: Settings = pipeline["settings"]
    server, thread, url = start_server(settings)
    try:
        import httpx

        index = httpx.get(f"{url}/reports/index.html")
        assert index.status_code == 200 and "Latest verdicts" in index.text
        link = index.text.split("Every run")[1].split('href="')[1].split('"')[0]
        report = httpx.get(f"{url}/reports/{link}")
        assert report.status_code == 200 and "What to do" in report.text
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_the_call_list_agrees_with_the_sheet_and_the_next_year_labels(pipeline: dict) -> None:
    import csv

    settings: Settings = pipeline["settings"]
    files = pipeline["result"]["call_list"]
    assert Path(files["xlsx"]).exists()
    listed = query(settings, "select ra, category, rank from call_list")
    behind = {ra for (ra,) in query(settings, "select ra from students where year = 2024 and defasagem < 0")}
    newly = {
        ra
        for (ra,) in query(
            settings,
            "select s.ra from students as s join risk_scores as r on r.ra = s.ra and r.year = s.year "
            "where s.year = 2024 and s.defasagem >= 0 and r.task = 'next_year' and r.risk_label = 'high'",
        )
    }
    assert {ra for ra, category, _ in listed if category == "behind now"} == behind
    assert {ra for ra, category, _ in listed if category == "newly at risk"} == newly
    assert files["students"] == {"behind now": len(behind), "newly at risk": len(newly)}
    with Path(files["csv"]).open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["ra"], r["category"], int(r["rank"])) for r in rows] == listed
    assert rows[0]["category"] == "newly at risk" and rows[0]["rank"] == "1" and rows[0]["reasons"]


def test_the_cards_and_model_show_the_baselines(pipeline: dict) -> None:
    import httpx

    from tests.support.service import start_server

    settings: Settings = pipeline["settings"]
    registry = Registry.from_settings(settings)
    for task, rule in (("current", "level_for_age"), ("next_year", "slack")):
        version = registry.champion(task)
        assert version is not None
        assert (
            "## Baselines: one-line rules on the same test year"
            in (registry.path(task, version) / "card.md").read_text()
        )
        meta = registry.metadata(task, version)
        assert rule in meta["metrics"]["baselines"]["rules"]
        assert all(flag.startswith("does not beat the ") for flag in meta["gate"]["flags"])
    current = registry.metadata("current", registry.champion("current"))
    assert any("level_for_age" in flag for flag in current["gate"]["flags"])  # the target is age and level
    server, thread, url = start_server(settings)
    try:
        model = httpx.get(f"{url}/model", timeout=30).json()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert model["next_year"]["metrics"]["baselines"]["segments"]["on track now"]["rules"]["slack"]["recall"] > 0
