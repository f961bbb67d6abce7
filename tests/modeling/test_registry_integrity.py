"""The gate verdict is hashed with the model, and a champion pointer edited by hand serves nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modeling.registry import METADATA_FILE, ModelInvalidError, PromotionRefusedError, Registry
from serving.model_holder import ModelHolder
from tests.factories import register_model


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    root = tmp_path_factory.mktemp("integrity") / "models"
    registry = Registry(root)
    champion = register_model(registry, "current", kind="logistic", seed=0, variants=())
    other = register_model(registry, "current", kind="logistic", seed=1, variants=())
    registry.promote("current", champion, reason="setup")
    return root, champion, other


@pytest.fixture
def registry(built: tuple[Path, str, str], tmp_path: Path) -> Registry:
    import shutil

    shutil.copytree(built[0], tmp_path / "models")
    return Registry(tmp_path / "models")


def _edit_metadata(registry: Registry, version: str, **changes: object) -> None:
    path = registry.path("current", version) / METADATA_FILE
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def test_a_gate_verdict_edited_in_metadata_is_refused(registry: Registry, built: tuple[Path, str, str]) -> None:
    other = built[2]
    _edit_metadata(registry, other, gate={"accepted": True, "reasons": [], "auto_promote": True, "min_recall": 0.0})
    with pytest.raises(ModelInvalidError, match="changed after it was saved"):
        registry.load_checked("current", other)
    with pytest.raises(ModelInvalidError):
        registry.promote("current", other, reason="edited verdict")


def test_a_hand_edited_pointer_serves_nothing_new(registry: Registry, built: tuple[Path, str, str]) -> None:
    _, champion, held = built
    holder = ModelHolder(registry, tasks=("current",))
    holder.refresh()
    assert holder.get("current").version == champion  # type: ignore[union-attr]
    pointer = registry.pointer_path("current")
    edited = json.loads(pointer.read_text()) | {"version": held}  # a held candidate, typed in by hand
    pointer.write_text(json.dumps(edited))
    holder.refresh()
    assert holder.get("current").version == champion  # type: ignore[union-attr]  # still the promoted one
    assert "not written for it by `passos models promote`" in holder.problems["current"]
    fresh = ModelHolder(registry, tasks=("current",))  # a worker starting now serves nothing
    fresh.refresh()
    assert fresh.get("current") is None
    registry.promote("current", held, reason="reviewed")  # the reviewed way
    holder.refresh()
    assert holder.get("current").version == held  # type: ignore[union-attr]


def test_check_pointer_names_the_version(registry: Registry, built: tuple[Path, str, str]) -> None:
    from modeling.registry_checks import check_pointer

    meta = registry.metadata("current", built[2])
    with pytest.raises(PromotionRefusedError, match=built[2]):
        check_pointer(registry.pointer("current"), built[2], meta)
    check_pointer(registry.pointer("current"), built[1], registry.metadata("current", built[1]))
