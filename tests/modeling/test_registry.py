"""The file-based model registry: immutable versions, checked loads, atomic champion pointer."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modeling.registry import (
    CorruptPointerError,
    NoPreviousChampionError,
    PromotionRefusedError,
    Registry,
    RegistryError,
    VersionExistsError,
    metadata_digest,
)
from passos.errors import ModelInvalidError, ModelNotFoundError, PassosError
from passos.settings import Settings

FEATURES = ["ida", "ieg", "idade_menos_fase"]
TASK = "current"


class StubModel:
    """A tiny picklable stand-in for the project's model bundle (logistic on fixed weights)."""

    def __init__(self, feature_names: list[str], weights: list[float], bias: float = 0.0) -> None:
        self.feature_names = list(feature_names)
        self.weights = np.asarray(weights, dtype=float)
        self.bias = bias

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        z = np.nan_to_num(np.asarray(X, dtype=float)) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-z))


class UnpicklableModel(StubModel):
    def __init__(self) -> None:
        super().__init__(FEATURES, [1.0, 1.0, 1.0])
        self.hook = lambda x: x  # lambdas cannot be pickled


def make_model(bias: float = 0.0) -> StubModel:
    return StubModel(FEATURES, [-0.4, -0.1, 0.8], bias)


def make_metadata(*, accepted: bool | None = True, check: bool = True, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "kind": "stub",
        "features": [{"name": name, "kind": "numeric"} for name in FEATURES],
        "metrics": {"test": {"recall": 0.93, "precision": 0.61, "roc_auc": 0.88, "f2": 0.84}},
        "protocol": "temporal",
        "training_data_sha256": "ab" * 32,
        "code_version": "test",
    }
    if accepted is not None:
        meta["gate"] = {"accepted": accepted, "reasons": [] if accepted else ["recall 0.500 < minimum 0.900"]}
    if check:
        meta["check_input"] = [5.5, float("nan"), 2.0]
    meta.update(extra)
    return meta


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "models")


def _rewrite_metadata(registry: Registry, version: str, **changes: Any) -> None:
    path = registry.path(TASK, version) / "metadata.json"
    meta = json.loads(path.read_text())
    meta.update(changes)
    meta["metadata_sha256"] = metadata_digest(meta)  # a writer who recomputes it: the deeper checks still hold
    path.write_text(json.dumps(meta))


# ---- save and load --------------------------------------------------------------------------


def test_save_and_load_round_trip(registry: Registry) -> None:
    model = make_model()

    def write_card(directory: Path) -> None:
        (directory / "card.md").write_text("# card\n")
        (directory / "plots").mkdir()
        (directory / "plots" / "roc.png").write_bytes(b"\x89PNG")

    version = registry.save(TASK, model, make_metadata(auc_nan=float("nan")), extra_files=write_card)

    loaded, meta = registry.load_checked(TASK, version)
    row = np.array([[5.5, np.nan, 2.0]])
    assert loaded.predict_proba(row)[0] == pytest.approx(model.predict_proba(row)[0], abs=1e-12)
    assert meta["version"] == version
    assert meta["task"] == TASK
    assert meta["created_at"].endswith("+00:00")
    assert len(meta["model_sha256"]) == 64
    assert meta["check_score"] == pytest.approx(float(model.predict_proba(row)[0]), abs=1e-12)
    assert meta["auc_nan"] is None
    assert meta["check_input"] == [5.5, None, 2.0]
    directory = registry.path(TASK, version)
    assert (directory / "card.md").read_text() == "# card\n"
    assert (directory / "plots" / "roc.png").is_file()
    raw = (directory / "metadata.json").read_text()
    assert "NaN" not in raw
    assert list(json.loads(raw)) == sorted(json.loads(raw))
    assert not [p for p in directory.parent.iterdir() if p.name.startswith(".tmp-")]


def test_new_versions_are_unique_and_shaped(registry: Registry) -> None:
    versions = {Registry.new_version() for _ in range(200)}
    assert len(versions) == 200
    for version in versions:
        assert version.startswith("v") and version[9] == "T" and version[16:18] == "Z-"
        assert len(version.split("-")[1]) == 8


def test_versions_are_immutable(registry: Registry) -> None:
    version = registry.save(TASK, make_model(), make_metadata())
    before = (registry.path(TASK, version) / "model.joblib").read_bytes()
    with pytest.raises(VersionExistsError, match=version):
        registry.save(TASK, make_model(bias=3.0), make_metadata(), version=version)
    assert (registry.path(TASK, version) / "model.joblib").read_bytes() == before
    # the same id under another task is a different version
    assert registry.save("next_year", make_model(), make_metadata(), version=version) == version


def test_save_rejects_bad_names_and_reserved_keys(registry: Registry) -> None:
    with pytest.raises(ValueError, match="invalid version"):
        registry.save(TASK, make_model(), make_metadata(), version="../escape")
    with pytest.raises(ValueError, match="invalid task"):
        registry.save(".hidden", make_model(), make_metadata())
    with pytest.raises(ValueError, match="model_sha256"):
        registry.save(TASK, make_model(), make_metadata(model_sha256="0" * 64))
    with pytest.raises(ValueError, match=r"metadata\.when"):
        registry.save(TASK, make_model(), make_metadata(when=object()))
    assert registry.save(TASK, make_model(), make_metadata(task=TASK, version="v1"), version="v1") == "v1"


def test_metadata_numpy_values_become_json(registry: Registry) -> None:
    version = registry.save(
        TASK,
        make_model(),
        make_metadata(
            scores=np.array([0.5, np.inf]),
            n=np.int64(3),
            auc=np.float32(0.75),
            where=Path("/x"),
            at=datetime(2026, 1, 2, tzinfo=UTC),
        ),
    )
    meta = registry.metadata(TASK, version)
    assert meta["scores"] == [0.5, None]
    assert meta["n"] == 3
    assert meta["auc"] == pytest.approx(0.75)
    assert meta["where"] == "/x"
    assert meta["at"] == "2026-01-02T00:00:00+00:00"


def test_unpicklable_model_is_invalid_and_leaves_nothing(registry: Registry) -> None:
    with pytest.raises(ModelInvalidError, match="cannot be pickled"):
        registry.save(TASK, UnpicklableModel(), make_metadata())
    assert list((registry.root / TASK).iterdir()) == []


def test_failed_extra_files_leave_no_version(registry: Registry) -> None:
    def broken(directory: Path) -> None:
        (directory / "card.md").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        registry.save(TASK, make_model(), make_metadata(), version="v1", extra_files=broken)
    assert list((registry.root / TASK).iterdir()) == []
    assert registry.list_versions() == []


def test_save_refuses_a_model_that_breaks_its_own_contract(registry: Registry) -> None:
    with pytest.raises(ModelInvalidError, match="do not match"):
        registry.save(TASK, StubModel(["ida", "ieg"], [1.0, 1.0]), make_metadata())
    with pytest.raises(ModelInvalidError, match="'features' must be a list"):
        registry.save(TASK, make_model(), make_metadata(features=["ida", "ieg", "idade_menos_fase"]))
    with pytest.raises(ModelInvalidError, match="check row scores"):
        registry.save(TASK, make_model(), make_metadata(check_score=0.123))
    with pytest.raises(ModelInvalidError, match="3 features"):
        registry.save(TASK, make_model(), make_metadata(check_input=[1.0, 2.0]))
    assert registry.list_versions() == []


def test_save_verifies_a_given_check_score(registry: Registry) -> None:
    model = make_model()
    score = float(model.predict_proba(np.array([[1.0, 2.0, 3.0]]))[0])
    version = registry.save(TASK, model, make_metadata(check_input=[1.0, 2.0, 3.0], check_score=score))
    assert registry.metadata(TASK, version)["check_score"] == score
    plain = registry.save(TASK, model, make_metadata(check=False))
    assert "check_score" not in registry.metadata(TASK, plain)
    assert registry.load_checked(TASK, plain)[1]["version"] == plain


def _slow_save(root: str, version: str, started: Any) -> None:
    """Child process: a save whose extra file is large and slow, to be killed mid-write."""

    def big_file(directory: Path) -> None:
        (directory / "plots").mkdir()
        with (directory / "plots" / "big.bin").open("wb") as handle:
            for i in range(400):
                handle.write(os.urandom(1 << 20))
                handle.flush()
                if i == 0:
                    started.set()
                time.sleep(0.05)

    Registry(Path(root)).save(TASK, make_model(), make_metadata(), version=version, extra_files=big_file)


def test_process_killed_mid_save_leaves_no_visible_version(registry: Registry) -> None:
    context = multiprocessing.get_context("spawn")
    started = context.Event()
    child = context.Process(target=_slow_save, args=(str(registry.root), "v-crash", started))
    child.start()
    try:
        assert started.wait(timeout=30), "the child never started writing"
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    finally:
        child.join(timeout=30)
    assert child.exitcode == -signal.SIGKILL

    leftovers = [p for p in (registry.root / TASK).iterdir() if p.name.startswith(".tmp-v-crash-")]
    assert len(leftovers) == 1, "the kill should have hit the save mid-write"
    assert (leftovers[0] / "model.joblib").is_file()
    assert not registry.path(TASK, "v-crash").exists()
    assert registry.list_versions() == []
    assert registry.registry_rows() == []
    with pytest.raises(ModelNotFoundError):
        registry.load_checked(TASK, "v-crash")
    with pytest.raises(ModelNotFoundError):
        registry.find("v-crash")

    assert registry.remove_stale_temp() == leftovers
    assert registry.save(TASK, make_model(), make_metadata(), version="v-crash") == "v-crash"
    assert registry.load_checked(TASK, "v-crash")[1]["version"] == "v-crash"


def test_remove_stale_temp_keeps_live_saves(registry: Registry) -> None:
    live = registry.root / TASK / f".tmp-v1-{os.getpid()}-00aa11bb"
    live.mkdir(parents=True)
    assert registry.remove_stale_temp(TASK) == []
    assert live.is_dir()
    assert registry.remove_stale_temp("next_year") == []


# ---- load_checked failures ----------------------------------------------------------------


def test_missing_version_is_not_found(registry: Registry) -> None:
    with pytest.raises(ModelNotFoundError, match="no version v404"):
        registry.load_checked(TASK, "v404")
    with pytest.raises(ModelNotFoundError):
        registry.metadata("next_year", "v404")
    assert issubclass(ModelNotFoundError, PassosError)


def test_corrupt_model_file_is_invalid(registry: Registry) -> None:
    version = registry.save(TASK, make_model(), make_metadata())
    path = registry.path(TASK, version) / "model.joblib"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelInvalidError, match="sha256"):
        registry.load_checked(TASK, version)


def test_truncated_pickle_is_invalid_even_with_a_matching_hash(registry: Registry) -> None:
    import hashlib

    version = registry.save(TASK, make_model(), make_metadata())
    path = registry.path(TASK, version) / "model.joblib"
    path.write_bytes(path.read_bytes()[:40])
    _rewrite_metadata(registry, version, model_sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    with pytest.raises(ModelInvalidError, match="cannot unpickle"):
        registry.load_checked(TASK, version)


def test_missing_model_file_is_invalid(registry: Registry) -> None:
    version = registry.save(TASK, make_model(), make_metadata())
    (registry.path(TASK, version) / "model.joblib").unlink()
    with pytest.raises(ModelInvalidError, match="cannot read"):
        registry.load_checked(TASK, version)


def test_corrupt_metadata_is_invalid(registry: Registry) -> None:
    version = registry.save(TASK, make_model(), make_metadata())
    path = registry.path(TASK, version) / "metadata.json"
    path.write_text('{"version": ')
    with pytest.raises(ModelInvalidError, match="not valid JSON"):
        registry.load_checked(TASK, version)
    path.write_text("[1, 2]")
    with pytest.raises(ModelInvalidError, match="not an object"):
        registry.metadata(TASK, version)
    assert registry.list_versions() == []  # skipped with a warning, not a crash


def test_wrong_feature_contract_is_invalid(registry: Registry) -> None:
    version = registry.save(TASK, make_model(), make_metadata())
    _rewrite_metadata(registry, version, features=[{"name": n} for n in reversed(FEATURES)])
    with pytest.raises(ModelInvalidError, match="different order"):
        registry.load_checked(TASK, version)
    _rewrite_metadata(registry, version, features=[{"name": "ida"}, {"name": "ieg"}])
    with pytest.raises(ModelInvalidError, match="unexpected \\['idade_menos_fase'\\]"):
        registry.load_checked(TASK, version)


def test_check_row_mismatch_is_invalid(registry: Registry) -> None:
    version = registry.save(TASK, make_model(), make_metadata())
    score = registry.metadata(TASK, version)["check_score"]
    _rewrite_metadata(registry, version, check_score=score + 1e-6)
    with pytest.raises(ModelInvalidError, match="check row scores"):
        registry.load_checked(TASK, version)
    _rewrite_metadata(registry, version, check_score=score + 1e-12)  # within 1e-9
    registry.load_checked(TASK, version)
    _rewrite_metadata(registry, version, check_score=None)
    with pytest.raises(ModelInvalidError, match="check row scores"):
        registry.load_checked(TASK, version)
    _rewrite_metadata(registry, version, check_input=None, check_score=0.5)
    with pytest.raises(ModelInvalidError, match="no check_input"):
        registry.load_checked(TASK, version)
    _rewrite_metadata(registry, version, check_input=["a", "b", "c"], check_score=0.5)
    with pytest.raises(ModelInvalidError, match="not a row of numbers"):
        registry.load_checked(TASK, version)


class _NoFeatures:
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.zeros(len(X))


class _NoPredict:
    feature_names = FEATURES


class _TwoColumns(StubModel):
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = super().predict_proba(X)
        return np.column_stack([1 - p, p])


class _NanScore(StubModel):
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), np.nan)


class _Raises(StubModel):
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        raise RuntimeError("broken booster")


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (_NoFeatures(), "no feature_names"),
        (_NoPredict(), "no predict_proba"),
        (_TwoColumns(FEATURES, [1.0, 1.0, 1.0]), "one score per row"),
        (_Raises(FEATURES, [1.0, 1.0, 1.0]), "broken booster"),
        (_NanScore(FEATURES, [1.0, 1.0, 1.0]), "scores the check row as nan"),
    ],
)
def test_models_without_the_interface_are_invalid(registry: Registry, model: Any, message: str) -> None:
    with pytest.raises(ModelInvalidError, match=message):
        registry.save(TASK, model, make_metadata())


# ---- listing ----------------------------------------------------------------------------------


def test_list_find_and_rows(registry: Registry) -> None:
    assert registry.list_versions() == []
    first = registry.save(TASK, make_model(), make_metadata(), version="v1")
    second = registry.save("next_year", make_model(), make_metadata(accepted=False), version="v2")
    third = registry.save(TASK, make_model(), make_metadata(accepted=None, metrics={}), version="v3")
    (registry.root / TASK / ".tmp-v9-1").mkdir()
    registry.promote(TASK, first, reason="first")

    listed = registry.list_versions()
    assert [row["version"] for row in listed] == [third, second, first]
    assert [row["version"] for row in registry.list_versions(TASK)] == [third, first]
    by_version = {row["version"]: row for row in listed}
    assert by_version[first]["is_champion"] is True
    assert by_version[first]["metrics"]["recall"] == 0.93
    assert by_version[second]["accepted"] is False
    assert by_version[third]["accepted"] is None
    assert by_version[third]["metrics"] is None

    assert registry.find(second) == "next_year"
    with pytest.raises(ModelNotFoundError):
        registry.find("v404")
    registry.save("next_year", make_model(), make_metadata(), version="v1")
    with pytest.raises(RegistryError, match="several tasks"):
        registry.find("v1")

    rows = {row["version"]: row for row in registry.registry_rows(TASK)}
    assert set(rows) == {first, third}
    assert rows[first] == {
        "version": first,
        "task": TASK,
        "created_at": registry.metadata(TASK, first)["created_at"],
        "kind": "stub",
        "accepted": True,
        "is_champion": True,
        "test_recall": 0.93,
        "test_precision": 0.61,
        "test_roc_auc": 0.88,
        "protocol": "temporal",
        "training_data_sha256": "ab" * 32,
        "code_version": "test",
    }
    assert rows[third]["test_recall"] is None
    assert rows[third]["is_champion"] is False


def test_from_settings_uses_models_dir(tmp_path: Path) -> None:
    registry = Registry.from_settings(Settings(home=tmp_path))
    assert registry.root == tmp_path / "models"
    assert not registry.root.exists()  # nothing is created until the first save


# ---- champion pointer -------------------------------------------------------------------------


def test_promote_and_rollback(registry: Registry) -> None:
    assert registry.champion(TASK) is None
    assert registry.pointer_signature(TASK) is None
    v1 = registry.save(TASK, make_model(), make_metadata(), version="v1")
    v2 = registry.save(TASK, make_model(bias=1.0), make_metadata(), version="v2")
    v3 = registry.save(TASK, make_model(bias=2.0), make_metadata(), version="v3")

    pointer = registry.promote(TASK, v1, reason="first model")
    assert registry.champion(TASK) == v1
    on_disk = json.loads(registry.pointer_path(TASK).read_text())
    assert on_disk == pointer
    assert on_disk["task"] == TASK and on_disk["reason"] == "first model" and on_disk["history"] == []
    sig1 = registry.pointer_signature(TASK)
    assert sig1 is not None

    registry.promote(TASK, v2, reason="weekly retrain")
    sig2 = registry.pointer_signature(TASK)
    assert sig2 != sig1
    registry.promote(TASK, v3, reason="weekly retrain")
    assert registry.pointer(TASK)["history"] == [v1, v2]  # type: ignore[index]
    assert registry.promote(TASK, v3, reason="again")["reason"] == "weekly retrain"  # no-op

    sig3 = registry.pointer_signature(TASK)
    assert registry.promote(TASK, v3, reason="no-op") is not None
    assert registry.pointer_signature(TASK) == sig3  # nothing changed, nothing to reload
    assert registry.rollback(TASK) == v2
    sig4 = registry.pointer_signature(TASK)
    assert sig4 not in (sig3, None)
    rolled_back = registry.pointer(TASK)
    assert rolled_back is not None
    assert rolled_back["version"] == v2 and rolled_back["history"] == [v1]
    assert "from v3" in rolled_back["reason"]
    assert registry.rollback(TASK) == v1
    with pytest.raises(NoPreviousChampionError, match="no previous champion"):
        registry.rollback(TASK)
    assert registry.champion(TASK) == v1
    assert not [p for p in (registry.root / TASK).iterdir() if ".tmp-" in p.name]


def test_rollback_without_any_champion_errors(registry: Registry) -> None:
    with pytest.raises(NoPreviousChampionError, match="champion: None"):
        registry.rollback(TASK)


def test_rollback_to_a_broken_model_keeps_the_pointer(registry: Registry) -> None:
    v1 = registry.save(TASK, make_model(), make_metadata(), version="v1")
    v2 = registry.save(TASK, make_model(bias=1.0), make_metadata(), version="v2")
    registry.promote(TASK, v1, reason="a")
    registry.promote(TASK, v2, reason="b")
    (registry.path(TASK, v1) / "model.joblib").write_bytes(b"garbage")
    with pytest.raises(ModelInvalidError):
        registry.rollback(TASK)
    assert registry.champion(TASK) == v2


def test_rejected_or_ungated_model_cannot_be_promoted(registry: Registry) -> None:
    rejected = registry.save(TASK, make_model(), make_metadata(accepted=False))
    ungated = registry.save(TASK, make_model(), make_metadata(accepted=None))
    with pytest.raises(PromotionRefusedError, match=r"rejected by the gate.*recall 0.500 < minimum 0.900"):
        registry.promote(TASK, rejected, reason="please")
    with pytest.raises(PromotionRefusedError, match="no gate verdict"):
        registry.promote(TASK, ungated, reason="please")
    with pytest.raises(ModelNotFoundError):
        registry.promote(TASK, "v404", reason="please")
    assert registry.champion(TASK) is None
    assert not registry.pointer_path(TASK).exists()


def test_invalid_model_cannot_be_promoted(registry: Registry) -> None:
    version = registry.save(TASK, make_model(), make_metadata())
    (registry.path(TASK, version) / "model.joblib").write_bytes(b"garbage")
    with pytest.raises(ModelInvalidError):
        registry.promote(TASK, version, reason="x")
    assert registry.champion(TASK) is None


def test_corrupt_pointer_is_reported(registry: Registry) -> None:
    version = registry.save(TASK, make_model(), make_metadata())
    registry.promote(TASK, version, reason="x")
    registry.pointer_path(TASK).write_text("{not json")
    with pytest.raises(CorruptPointerError, match="not valid JSON"):
        registry.champion(TASK)
    registry.pointer_path(TASK).write_text('{"version": 3}')
    with pytest.raises(CorruptPointerError, match="lacks"):
        registry.champion(TASK)
    assert [row["is_champion"] for row in registry.list_versions()] == [False]


def _promote_many(root: str, versions: list[str], barrier: Any) -> None:
    """Child process: promote each version in turn, racing the other child."""
    registry = Registry(Path(root))
    barrier.wait(timeout=60)
    for version in versions:
        registry.promote(TASK, version, reason=f"race {version}")


def test_concurrent_promotes_keep_a_valid_pointer(registry: Registry) -> None:
    per_process = 20
    versions = [
        registry.save(TASK, make_model(bias=i / 10), make_metadata(), version=f"v{i:03d}")
        for i in range(2 * per_process)
    ]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    children = [
        context.Process(target=_promote_many, args=(str(registry.root), versions[i::2], barrier)) for i in range(2)
    ]
    for child in children:
        child.start()

    reads: list[str | None] = []
    errors: list[BaseException] = []

    def read_pointer_while_racing() -> None:
        while any(child.is_alive() for child in children):
            try:
                reads.append(registry.champion(TASK))
            except BaseException as exc:  # collected and asserted on below
                errors.append(exc)

    reader = threading.Thread(target=read_pointer_while_racing)
    reader.start()
    for child in children:
        child.join(timeout=120)
    reader.join(timeout=10)

    assert [child.exitcode for child in children] == [0, 0]
    assert errors == []
    assert {r for r in reads if r is not None} <= set(versions)
    pointer = json.loads(registry.pointer_path(TASK).read_text())
    # Each promote read-modify-writes the history under the lock; a lost update would shorten it.
    assert len(pointer["history"]) == 2 * per_process - 1
    assert sorted([*pointer["history"], pointer["version"]]) == versions
    assert not [p for p in (registry.root / TASK).iterdir() if ".champion.json.tmp" in p.name]


def test_the_next_save_removes_the_leftovers_of_a_killed_save(registry: Registry) -> None:
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process id that no longer runs: a save killed by kill -9
    stale = registry.root / TASK / f".tmp-v-old-{gone.pid}-00aa11bb"
    stale.mkdir(parents=True)
    (stale / "model.joblib").write_bytes(b"half a model")
    live = registry.root / TASK / f".tmp-v-live-{os.getpid()}-00cc22dd"
    live.mkdir()
    assert registry.save(TASK, make_model(), make_metadata(), version="v-next") == "v-next"
    assert not stale.exists()
    assert live.is_dir()  # a save still running in a live process is left alone
