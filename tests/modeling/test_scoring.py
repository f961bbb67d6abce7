"""The scoring core: routing, labels, the client's field names, and the served-path figures."""

from __future__ import annotations

import copy
import itertools
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from features.featuresets import encode_frame, feature_names
from modeling.batch import score_table
from modeling.registry import Registry
from modeling.scoring import answer_rows, family, request_fields, risk_label, route_rows, score_frame, score_rows
from modeling.segments import BEHIND_NOW, ON_TRACK_NOW
from modeling.served import held_out_router, served_figures, served_lines
from modeling.variants import readme_fields_table, required_by_task, required_features
from tests.factories import make_feature_frame, register_model

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Any:
    registry = Registry(tmp_path_factory.mktemp("scoring") / "models")
    version = register_model(registry, "next_year", kind="lightgbm", seed=2, variants=("core", "example"))
    model, _ = registry.load_checked("next_year", version)
    return model


def test_labels_come_from_the_answering_variants_threshold() -> None:
    assert risk_label(0.5, 0.5) == "high" and risk_label(0.49, 0.5) == "low"
    assert risk_label(float("nan"), 0.5) == "unknown" and risk_label(0.9, None) == "unknown"


def test_vectorised_routing_is_the_bundles_own_rule_for_every_field_set(champion: Any) -> None:
    names = feature_names("next_year")
    required = sorted({n for b in family(champion) for n in b.required})
    masks = []
    for size in range(len(required) + 1):
        for present in itertools.combinations(required, size):
            masks.append([n in present or n not in required for n in names])
    known = np.asarray(masks, dtype=bool)
    members, chosen = route_rows(champion, known)
    expected = [champion.route({n for n, k in zip(names, row, strict=True) if k}) for row in known]
    got = [None if k < 0 else members[k] for k in chosen.tolist()]
    assert [id(b) for b in got] == [id(b) for b in expected]
    assert {None if b is None else b.variant for b in got} >= {"full", "example", None}


def test_every_path_labels_a_row_at_its_segments_cut(champion: Any) -> None:
    model = copy.deepcopy(champion)
    for bundle in family(model):
        bundle.metadata["segment_thresholds"] = {BEHIND_NOW: {"threshold": 1.01}, ON_TRACK_NOW: {"threshold": 0.0}}
    single = {b.variant: b.threshold for b in family(model)}
    frame = make_feature_frame("next_year", years=(2024,), n_per_year=60, seed=5).drop(columns=["target"])
    frame.loc[frame.index % 5 == 0, "defasagem"] = np.nan
    matrix = encode_frame(frame, "next_year")
    answers, _ = answer_rows(model, matrix)
    batch = score_table(
        model, "v", pa.Table.from_pandas(frame, preserve_index=False), task="next_year", scored_at=datetime.now(UTC)
    ).to_pandas()
    ranked = score_frame(model, "v", frame, task="next_year").set_index("ra").loc[frame["ra"]]
    labels = [a["risk_label"] for a in answers]
    assert batch["risk_label"].tolist() == labels == ranked["risk_label"].tolist()
    seen = set()
    for answer, defasagem in zip(answers, frame["defasagem"].tolist(), strict=True):
        if answer["variant"] is None:
            assert (answer["segment"], answer["threshold"], answer["risk_label"]) == (None, None, "unknown")
        elif math.isnan(defasagem):
            cut = single[answer["variant"]]
            assert (answer["segment"], answer["threshold"]) == (None, cut)
            assert answer["risk_label"] == risk_label(answer["risk_score"], cut)
        else:
            expected = ("behind", 1.01, "low") if defasagem < 0 else ("on_track", 0.0, "high")
            assert (answer["segment"], answer["threshold"], answer["risk_label"]) == expected
        seen.add(answer["segment"])
    assert seen == {"behind", "on_track", None}
    before = score_rows(model, matrix, reasons=False, per_segment=False)
    assert before.segments == [None] * len(frame)
    assert before.labels() == [
        "unknown" if a["variant"] is None else risk_label(a["risk_score"], single[a["variant"]]) for a in answers
    ]


def test_a_model_without_segment_cuts_labels_at_its_single_threshold(champion: Any) -> None:
    model = copy.deepcopy(champion)
    for bundle in family(model):
        bundle.metadata["segment_thresholds"] = None
    frame = make_feature_frame("next_year", years=(2024,), n_per_year=30, seed=6).drop(columns=["target"])
    answers, _ = answer_rows(model, encode_frame(frame, "next_year"))
    single = {b.variant: b.threshold for b in family(model)}
    assert {a["segment"] for a in answers} == {None}
    assert [a["threshold"] for a in answers] == [
        None if a["variant"] is None else single[a["variant"]] for a in answers
    ]


def test_a_score_exactly_at_its_cut_is_high_on_every_path(champion: Any) -> None:
    """``high`` means ``risk_score >= threshold``: a student exactly at the cut is flagged, not let go."""
    model = copy.deepcopy(champion)
    for bundle in family(model):
        bundle.metadata["segment_thresholds"] = None  # the single threshold applies
    frame = make_feature_frame("next_year", years=(2024,), n_per_year=60, seed=7).drop(columns=["target"])
    frame.loc[frame.index % 3 == 0, ["idade", "idade_menos_fase", "genero"]] = np.nan  # for the lesser variants
    matrix = encode_frame(frame, "next_year")
    answers, _ = answer_rows(model, matrix)
    on_cut: dict[str, int] = {}
    for i, answer in enumerate(answers):
        if answer["variant"] is not None:
            on_cut.setdefault(answer["variant"], i)
    assert {"full", "example"} <= set(on_cut)
    for bundle in family(model):
        if bundle.variant in on_cut:
            bundle.threshold = answers[on_cut[bundle.variant]]["risk_score"]  # the cut on that row's score
    again, _ = answer_rows(model, matrix)
    ranked = score_frame(model, "v", frame, task="next_year").set_index("ra")
    for i in on_cut.values():
        assert again[i]["risk_score"] == again[i]["threshold"] and again[i]["risk_label"] == "high"
        assert ranked.loc[frame["ra"].iloc[i], "risk_label"] == "high"


def test_a_row_too_thin_for_every_variant_is_unknown_and_told_what_to_send(champion: Any) -> None:
    frame = make_feature_frame("next_year", years=(2024,), n_per_year=4, seed=8).drop(columns=["target"])
    frame.loc[:, [n for n in feature_names("next_year") if n not in ("iaa", "ips")]] = np.nan
    answers, scored = answer_rows(champion, encode_frame(frame, "next_year"), sent=[{"iaa", "ips"}] * len(frame))
    smallest = min((request_fields(b.required, known={"iaa", "ips"}) for b in family(champion) if b.servable), key=len)
    assert smallest and not {"iaa", "ips"} & set(smallest)
    for answer in answers:
        assert (answer["risk_label"], answer["risk_score"], answer["variant"], answer["threshold"]) == (
            "unknown",
            None,
            None,
            None,
        )
        assert answer["needed"] == smallest and answer["reasons"] == [] and answer["percentile"] is None
    assert scored.labels() == ["unknown"] * len(frame) and np.isnan(scored.scores).all()
    ranked = score_frame(champion, "v", frame, task="next_year")
    assert ranked["risk_label"].tolist() == ["unknown"] * len(frame) and ranked["risk_score"].isna().all()


def test_a_variant_the_gate_rejected_never_answers(champion: Any) -> None:
    """A rejected variant attached to a bundle all the same (an older version, a hand-built one) is skipped."""
    frame = make_feature_frame("next_year", years=(2024,), n_per_year=60, seed=5).drop(columns=["target"])
    frame.loc[frame.index % 2 == 0, ["idade", "idade_menos_fase", "genero"]] = np.nan  # too thin for full and core
    matrix = encode_frame(frame, "next_year")
    accepted, _ = answer_rows(champion, matrix)
    thin = [i for i, answer in enumerate(accepted) if answer["variant"] == "example"]
    assert thin  # while accepted, the example variant answers these rows
    model = copy.deepcopy(champion)
    rejected = next(b for b in model.variants if b.variant == "example")
    rejected.metadata["gate"] = {"accepted": False, "reasons": ["recall 0.500 < minimum 0.900"]}
    answers, _ = answer_rows(model, matrix)
    assert "example" not in {a["variant"] for a in answers}
    for i in thin:  # no other variant takes them: unknown, told what the accepted ones need
        assert answers[i]["risk_label"] == "unknown" and answers[i]["needed"]
        assert not set(answers[i]["needed"]) <= set(rejected.used)
    ranked = score_frame(model, "v", frame, task="next_year").set_index("ra")
    assert (ranked.loc[frame["ra"].iloc[thin], "risk_label"] == "unknown").all()


def test_only_a_field_known_in_99_of_100_training_rows_is_required() -> None:
    """A field missing in more rows than that is one the variant has learnt to do without."""
    rows = 200
    frame = pd.DataFrame({"ida": np.arange(rows, dtype=float), "ipv": 1.0, "iaa": 1.0, "ips": 1.0})
    frame.loc[:1, "ipv"] = np.nan  # missing in 1 % of the rows: still required
    frame.loc[:2, "iaa"] = np.nan  # 1.5 %: not required
    frame.loc[: rows // 10 - 1, "ips"] = np.nan  # 10 %: not required
    assert required_features(frame, ["ida", "ipv", "iaa", "ips", "inde"]) == ("ida", "ipv")  # inde: not in the rows


def test_client_fields_name_the_sources_of_derived_features() -> None:
    assert request_fields(["idade_menos_fase", "folga_proximo_ano", "ida"]) == ["idade", "fase", "ida"]
    assert request_fields(["idade_menos_fase", "atraso_esperado"], known={"fase"}) == ["idade"]
    assert request_fields(["anos_no_programa"], sent={"year"}) == ["ano_ingresso"]
    assert request_fields(["anos_no_programa", "idade_ref"], known={"anos_no_programa"}) == ["idade"]


def test_every_path_answers_a_row_as_the_api_does(champion: Any) -> None:
    frame = make_feature_frame("next_year", years=(2024,), n_per_year=60, seed=5).drop(columns=["target"])
    thin = frame.index % 3 == 0
    frame.loc[thin, ["idade", "idade_menos_fase", "genero"]] = np.nan  # too thin for full and core
    frame.loc[frame.index % 7 == 0, [n for n in feature_names("next_year") if n != "iaa"]] = np.nan  # unknown
    answers, _ = answer_rows(champion, encode_frame(frame, "next_year"))
    batch = score_table(
        champion,
        "v",
        pa.Table.from_pandas(frame, preserve_index=False),
        task="next_year",
        scored_at=datetime.now(UTC),
    ).to_pandas()
    ranked = score_frame(champion, "v", frame, task="next_year").set_index("ra").loc[frame["ra"]]
    labels = [a["risk_label"] for a in answers]
    assert batch["risk_label"].tolist() == labels == ranked["risk_label"].tolist()
    assert {"unknown", "high", "low"} <= set(labels)
    assert {a["variant"] for a in answers} >= {"full", "example", None}
    scores = np.asarray([np.nan if a["risk_score"] is None else a["risk_score"] for a in answers])
    np.testing.assert_allclose(batch["risk_score"].to_numpy(dtype=float), scores, atol=1e-9)
    assert batch["risk_score"].isna().tolist() == [a["risk_label"] == "unknown" for a in answers]
    for answer in answers:
        if answer["variant"] == "full":
            assert answer["upgrade"] is None
        else:
            upgrade = answer["upgrade"]
            assert upgrade["variant"] == "full" and upgrade["add"] and upgrade["recall"] == 0.95
        if answer["risk_label"] == "unknown":
            assert answer["needed"] and answer["percentile"] is None and answer["reasons"] == []


def test_served_figures_count_unknown_as_missed_and_split_next_year_by_now(champion: Any) -> None:
    test = make_feature_frame("next_year", years=(2024,), n_per_year=200, seed=9)
    test.loc[test.index % 5 == 0, ["idade", "idade_menos_fase", "fase"]] = np.nan
    router = held_out_router(champion, champion.variants)
    figures = served_figures(router, test, "next_year", resamples=50)
    shares = figures["shares"]
    assert sum(shares.values()) == pytest.approx(1.0) and shares["unknown"] == pytest.approx(0.2)
    assert figures["answered"]["unknown"] == 40 and figures["n"] == 200
    assert figures["recall"] < figures["recall_scored"]
    assert figures["bootstrap_95"]["roc_auc"][0] <= figures["roc_auc"] <= figures["bootstrap_95"]["roc_auc"][1]
    parts = figures["by_now"]
    assert parts["behind_now"]["n"] + parts["on_track_now"]["n"] == 200 - int(test["defasagem"].isna().sum())
    text = "\n".join(served_lines(figures, test_year=2024))
    assert "| all | 200 | 0.200 |" in text and "behind now" in text and "on track now" in text
    assert served_lines(None)[-1].startswith("No held-out year")


def test_the_api_reference_table_of_fields_is_the_codes() -> None:
    readme = API_DOC.read_text(encoding="utf-8")
    must_send = required_by_task(readme)
    assert set(must_send) == {"current", "next_year"}
    assert readme_fields_table(must_send) in readme


def test_served_figures_show_each_segment_before_and_after_with_the_targets(champion: Any) -> None:
    model = copy.deepcopy(champion)
    for bundle in family(model):  # on-track students flagged, students behind now never
        bundle.metadata["segment_thresholds"] = {BEHIND_NOW: {"threshold": 1.01}, ON_TRACK_NOW: {"threshold": 0.0}}
    test = make_feature_frame("next_year", years=(2024,), n_per_year=200, seed=9)
    router = held_out_router(model, model.variants)
    figures = served_figures(router, test, "next_year", resamples=50)
    after, before = figures["by_now"], figures["before"]["by_now"]
    assert after["behind_now"]["flagged"] == 0 and after["behind_now"]["recall"] == 0.0
    on_track = after["on_track_now"]
    assert on_track["flag_rate"] == pytest.approx(1 - on_track["shares"]["unknown"])
    assert on_track["caught"] == on_track["flagged"] - round(on_track["flagged"] * (1 - on_track["precision"]))
    assert before["behind_now"]["flagged"] > 0
    assert (
        figures["segments_answered"]["behind"] == after["behind_now"]["n"] - after["behind_now"]["answered"]["unknown"]
    )
    met = {(t["group"], t["metric"]): t for t in figures["targets"]}
    assert met[("all", "recall")]["value"] == figures["recall"]
    assert met[("on_track_now", "recall")]["gap"] == pytest.approx(on_track["recall"] - 0.80, abs=1e-3)
    text = "\n".join(served_lines(figures, test_year=2024))
    assert "| on track now (defasagem >= 0) | one threshold |" in text
    assert "| on track now (defasagem >= 0) | per segment |" in text
    assert "- recall of all students >= 0.90:" in text and ("met (" in text or "missed (" in text)
