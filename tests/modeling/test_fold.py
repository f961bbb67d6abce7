"""The served LightGBM ensemble: its members folded into one booster, and exact SHAP by table look-up.

The real-data tests train the ensembles the pipeline trains (cross-fitted on the real PEDE years)
and check the folded booster and the tables against the per-member computation they replace.
"""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import asdict
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from features.featuresets import encode_frame, feature_specs
from modeling.bundle import ModelBundle
from modeling.folding import fold_boosters
from modeling.registry import Registry
from modeling.training import fit_candidate
from modeling.treeshap import PathTables, UnsupportedTreeError
from passos.settings import Settings
from warehouse import loader
from warehouse.connection import connect
from warehouse.sources import discover

TASKS = ("current", "next_year")


@pytest.fixture(scope="module")
def real_features(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    settings = Settings(home=tmp_path_factory.mktemp("fold"))
    with connect(settings) as con:
        loader.ingest(con, "real", discover([real_data]))
        return {task: con.execute(f"select * from features_{task} where target is not null").df() for task in TASKS}


@pytest.fixture(scope="module")
def ensembles(real_features: dict[str, pd.DataFrame]) -> dict[str, ModelBundle]:
    return {
        task: fit_candidate("lightgbm", frame, task, recall_target=0.9, seed=11)[0]
        for task, frame in real_features.items()
    }


def per_member(bundle: ModelBundle, X: np.ndarray, **kind: bool) -> np.ndarray:
    """What the ensemble computed before folding: one call per member, then the mean."""
    return np.mean([m.predict(X, num_threads=1, **kind) for m in bundle.members], axis=0)


def edge_rows(X: np.ndarray, bundle: ModelBundle) -> np.ndarray:
    """Rows with every field missing, zeros, tiny values, negative and unseen category codes."""
    rows = np.repeat(X[:6], 2, axis=0)
    rows[0] = np.nan
    rows[1] = 0.0
    rows[2, ::2] = np.nan
    rows[3, 1::2] = -1e-36
    categorical = [j for j, name in enumerate(bundle.feature_names) if name in bundle.categories]
    rows[4:8, categorical] = np.array([[-1.0], [99.0], [1.7], [-0.5]])
    return np.ascontiguousarray(rows)


@pytest.mark.data
@pytest.mark.parametrize("task", TASKS)
def test_the_folded_booster_is_the_ensemble(
    ensembles: dict[str, ModelBundle], real_features: dict[str, pd.DataFrame], task: str
) -> None:
    bundle = ensembles[task]
    assert len(bundle.members) >= 2
    X = np.vstack([encode_frame(real_features[task], task), edge_rows(encode_frame(real_features[task], task), bundle)])
    folded = bundle.folded
    assert folded.num_trees() == sum(m.num_trees() for m in bundle.members)
    np.testing.assert_allclose(
        folded.predict(X, raw_score=True), per_member(bundle, X, raw_score=True), rtol=0, atol=1e-9
    )
    np.testing.assert_allclose(
        folded.predict(X, pred_contrib=True), per_member(bundle, X, pred_contrib=True), rtol=0, atol=1e-9
    )
    np.testing.assert_allclose(bundle.raw_score(X), per_member(bundle, X, raw_score=True), rtol=0, atol=1e-9)


@pytest.mark.data
@pytest.mark.parametrize("task", TASKS)
def test_table_shap_is_lightgbms_pred_contrib(
    ensembles: dict[str, ModelBundle], real_features: dict[str, pd.DataFrame], task: str
) -> None:
    bundle = ensembles[task]
    X = encode_frame(real_features[task], task)
    X = np.vstack([X, edge_rows(X, bundle)])
    tables = bundle.shap_tables()
    assert tables is not None
    expected = per_member(bundle, X, pred_contrib=True)
    np.testing.assert_allclose(tables.contributions(X), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(tables.contributions(X, chunk_rows=7), expected, rtol=0, atol=1e-9)
    # What the bundle serves: the same pushes, and a score that is the members' mean calibrated.
    np.testing.assert_allclose(bundle.contributions(X), expected[:, :-1], rtol=0, atol=1e-9)
    scores, _ = bundle.explain(X)
    np.testing.assert_allclose(scores, bundle.calibrator(expected.sum(axis=1)), rtol=0, atol=1e-9)
    np.testing.assert_allclose(scores, bundle.predict_proba(X), rtol=0, atol=1e-9)


@pytest.mark.data
def test_the_bundle_round_trips_through_the_registry(
    ensembles: dict[str, ModelBundle], real_features: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    task = "current"
    bundle = ensembles[task]
    X = encode_frame(real_features[task], task)
    registry = Registry(tmp_path / "models")
    metadata = {
        "task": task,
        "kind": "lightgbm",
        "features": [asdict(spec) for spec in feature_specs(task)],
        "check_input": X[0].tolist(),
    }
    version = registry.save(task, bundle, metadata)
    loaded, meta = registry.load_checked(task, version)
    assert isinstance(loaded, ModelBundle) and meta["model_sha256"]
    assert loaded._tables is not None  # built on loading, not on the first request
    np.testing.assert_array_equal(loaded.raw_score(X), bundle.raw_score(X))
    np.testing.assert_allclose(loaded.raw_score(X), per_member(bundle, X, raw_score=True), rtol=0, atol=1e-9)
    (loaded_scores, loaded_reasons), (scores, reasons) = loaded.explain(X[:50]), bundle.explain(X[:50])
    np.testing.assert_array_equal(loaded_scores, scores)
    assert loaded_reasons == reasons
    np.testing.assert_allclose(
        loaded.contributions(X), per_member(bundle, X, pred_contrib=True)[:, :-1], rtol=0, atol=1e-9
    )


def _members(**params: object) -> tuple[list[lgb.Booster], np.ndarray]:
    rng = np.random.default_rng(0)
    n = 1500
    X = rng.random((n, 5))
    X[rng.random(X.shape) < 0.2] = np.nan
    X[:, 3] = rng.integers(0, 6, n)
    X[:, 4] = np.where(rng.random(n) < 0.3, 0.0, X[:, 4])
    y = ((np.nan_to_num(X[:, 0]) + (X[:, 3] % 3) / 4 + np.nan_to_num(X[:, 4]) + rng.normal(0, 0.3, n)) > 1).astype(int)
    base = {"objective": "binary", "verbose": -1, "num_leaves": 15, "min_data_per_group": 5, "cat_smooth": 1.0}
    members = [
        lgb.train(
            {**base, "seed": seed, "bagging_fraction": 0.8, "bagging_freq": 1, **params},
            lgb.Dataset(X, y, categorical_feature=[3]),
            30,
        )
        for seed in range(3)
    ]
    return members, X


@pytest.mark.parametrize("zero_as_missing", [False, True])
def test_tables_follow_every_missing_value_rule(zero_as_missing: bool) -> None:
    """Missing types None/NaN and Zero (zero as missing), categorical splits, odd inputs."""
    members, X = _members(zero_as_missing=zero_as_missing)
    folded = fold_boosters(members)
    odd = X[:8].copy()
    odd[:, 3] = [-1.0, 99.0, 2.7, -0.5, np.nan, 0.0, 1e-40, 5.0]
    odd[:4, 0] = [0.0, -1e-36, np.inf, -np.inf]
    rows = np.vstack([X, odd])
    expected = np.mean([m.predict(rows, pred_contrib=True) for m in members], axis=0)
    np.testing.assert_allclose(folded.predict(rows, pred_contrib=True), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(PathTables.from_booster(folded).contributions(rows), expected, rtol=0, atol=1e-9)


def test_folding_refuses_members_that_do_not_share_their_features() -> None:
    members, X = _members()
    other = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X[:, :4], (X[:, 1] > 0.5).astype(int)), 5)
    with pytest.raises(ValueError, match="different headers"):
        fold_boosters([members[0], other])


def test_linear_trees_fall_back_to_pred_contrib() -> None:
    rng = np.random.default_rng(1)
    X = rng.random((400, 3))
    linear = lgb.train(
        {"objective": "binary", "verbose": -1, "linear_tree": True},
        lgb.Dataset(X, (X[:, 0] > 0.5).astype(int)),
        5,
    )
    with pytest.raises(UnsupportedTreeError, match="linear"):
        PathTables.from_booster(linear)
    with pytest.raises(ValueError, match="linear"):
        fold_boosters([linear, linear])


@pytest.mark.data
def test_the_pickle_holds_the_members_only(ensembles: dict[str, ModelBundle]) -> None:
    bundle = ensembles["current"]
    bundle.shap_tables()
    state = bundle.__getstate__()
    assert "_folded" not in state and "_tables" not in state
    copy = pickle.loads(pickle.dumps(bundle))
    assert copy.folded is not None and copy._tables is not None
    assert copy.folded.model_to_string() == bundle.folded.model_to_string()
    # A bundle derived from another folds its own members, not the other's.
    single = dataclasses.replace(bundle, members=bundle.members[:1])
    assert single.folded is bundle.members[0] and single._tables is None


def test_one_row_touches_no_pandas() -> None:
    """The API's calls (score with reasons, score alone, percentile) run numpy and LightGBM only."""
    import sys

    from features.featuresets import encode_frame as encode
    from tests.factories import make_feature_frame

    frame = make_feature_frame("current", years=(2022, 2023), n_per_year=150, seed=2)
    bundle = fit_candidate("lightgbm", frame, "current", recall_target=0.9, seed=2)[0]
    bundle.reference = (0.2, 0.5, 0.8)
    row = encode(frame.head(1), "current")
    bundle.explain(row)  # tables built before watching
    called: set[str] = set()

    def watch(frame: object, event: str, arg: object) -> None:
        module = getattr(frame, "f_globals", {}).get("__name__", "")
        if event == "call" and module.split(".")[0] == "pandas":
            called.add(module)

    sys.setprofile(watch)
    try:
        scores, _ = bundle.explain(row)
        bundle.predict_proba(row)
        bundle.percentile(scores)
    finally:
        sys.setprofile(None)
    assert called == set()


def test_paths_too_wide_for_tables_fall_back_to_pred_contrib(monkeypatch: pytest.MonkeyPatch) -> None:
    from features.featuresets import encode_frame as encode
    from modeling import treeshap
    from tests.factories import make_feature_frame

    frame = make_feature_frame("current", years=(2022, 2023), n_per_year=150, seed=4)
    bundle = fit_candidate("lightgbm", frame, "current", recall_target=0.9, seed=4)[0]
    X = encode(frame, "current")
    expected = bundle.contributions(X)
    monkeypatch.setattr(treeshap, "MAX_PATH_FEATURES", 1)
    narrow = dataclasses.replace(bundle)
    assert narrow.shap_tables() is None
    np.testing.assert_allclose(narrow.contributions(X), expected, rtol=0, atol=1e-9)


def test_trees_without_splits_are_the_base_value() -> None:
    rng = np.random.default_rng(3)
    X = rng.random((200, 3))
    stumps = lgb.train(
        {"objective": "binary", "verbose": -1, "min_data_in_leaf": 500},
        lgb.Dataset(X, (X[:, 0] > 0.3).astype(int)),
        3,
    )
    tables = PathTables.from_booster(stumps)
    np.testing.assert_allclose(tables.contributions(X), stumps.predict(X, pred_contrib=True), rtol=0, atol=1e-12)
