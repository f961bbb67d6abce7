"""Hot reload cannot be wedged by a registry file: /dev/zero, FIFOs, huge files, hung reads."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from modeling.registry import MODEL_FILE, ModelInvalidError, Registry
from serving.model_holder import ModelHolder
from tests.factories import register_model

TASKS = ("current", "next_year")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    root = tmp_path_factory.mktemp("reload-safety") / "models"
    registry = Registry(root)
    made = {task: [register_model(registry, task, seed=s) for s in (0, 1)] for task in TASKS}
    for task in TASKS:
        registry.promote(task, made[task][0], reason="setup")
    return root, made


@pytest.fixture
def registry(source: tuple[Path, dict[str, list[str]]], tmp_path: Path) -> Registry:
    shutil.copytree(source[0], tmp_path / "models")
    return Registry(tmp_path / "models")


def _finishes(action, within: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Run ``action`` in a daemon thread and fail (not hang) when it takes longer than ``within``."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(within)
    assert not thread.is_alive(), f"still running after {within} s"
    if errors:
        raise errors[0]


def _link_model(registry: Registry, task: str, version: str, target: str) -> Path:
    path = registry.path(task, version) / MODEL_FILE
    kept = path.with_name("model.keep")
    path.rename(kept)
    path.symlink_to(target)
    return kept


@pytest.mark.parametrize("bad_task", TASKS)
def test_a_model_linked_to_dev_zero_does_not_stop_later_reloads(
    registry: Registry, source: tuple[Path, dict[str, list[str]]], bad_task: str
) -> None:
    made = source[1]
    holder = ModelHolder(registry, load_timeout_s=5)
    _finishes(holder.refresh)
    assert holder.ready()
    bad = made[bad_task][1]
    _link_model(registry, bad_task, bad, "/dev/zero")
    registry._write_pointer(bad_task, bad, reason="planted", history=[made[bad_task][0]])
    other = next(t for t in TASKS if t != bad_task)
    registry.promote(other, made[other][1], reason="meanwhile")
    _finishes(holder.refresh)
    assert "not a regular file" in holder.problems[bad_task]
    assert holder.get(bad_task).version == made[bad_task][0]  # type: ignore[union-attr]  # still serving
    assert holder.get(other).version == made[other][1]  # type: ignore[union-attr]  # the other task moved on
    registry.rollback(other)
    registry._write_pointer(bad_task, made[bad_task][0], reason="back", history=[])
    _finishes(holder.refresh)
    assert holder.get(other).version == made[other][0]  # type: ignore[union-attr]
    assert bad_task not in holder.problems


def test_a_refused_version_is_retried_when_its_files_change(
    registry: Registry, source: tuple[Path, dict[str, list[str]]]
) -> None:
    version = source[1]["current"][1]
    kept = _link_model(registry, "current", version, "/dev/zero")
    registry._write_pointer("current", version, reason="planted", history=[])
    holder = ModelHolder(registry, tasks=("current",))
    _finishes(holder.refresh)
    assert holder.get("current") is None and "not a regular file" in holder.problems["current"]
    _finishes(holder.refresh)
    assert holder.get("current") is None  # nothing changed: not retried in a loop
    (registry.path("current", version) / MODEL_FILE).unlink()
    kept.rename(registry.path("current", version) / MODEL_FILE)  # repaired; the pointer is untouched
    _finishes(holder.refresh)
    assert holder.get("current").version == version  # type: ignore[union-attr]
    assert "current" not in holder.problems


def test_fifos_and_oversized_files_are_refused_unread(
    registry: Registry, source: tuple[Path, dict[str, list[str]]]
) -> None:
    version = source[1]["current"][1]
    path = registry.path("current", version) / MODEL_FILE
    size = path.stat().st_size
    small = Registry(registry.root, max_model_bytes=size - 1)
    with pytest.raises(ModelInvalidError, match="over the limit"):
        small.load_checked("current", version)
    path.rename(path.with_name("model.keep"))
    os.mkfifo(path)  # opening a FIFO for reading blocks until a writer comes: never here
    with pytest.raises(ModelInvalidError, match="not a regular file"):
        _finishes(lambda: registry.load_checked("current", version))


def test_a_pointer_linked_to_dev_zero_is_a_problem_not_a_hang(registry: Registry) -> None:
    holder = ModelHolder(registry)
    pointer = registry.pointer_path("next_year")
    pointer.unlink()
    pointer.symlink_to("/dev/zero")
    _finishes(holder.refresh)
    assert holder.get("current") is not None and holder.get("next_year") is None
    assert "not a regular file" in holder.problems["next_year"]


class HungRegistry(Registry):
    """A registry on a mount that stops answering for one task (what a hung network share does)."""

    def __init__(self, root: Path, hung_task: str) -> None:
        super().__init__(root)
        self.hung_task = hung_task
        self.release = threading.Event()

    def load_checked(self, task: str, version: str):  # type: ignore[no-untyped-def]
        if task == self.hung_task:
            self.release.wait(60)
        return super().load_checked(task, version)


def test_a_hung_read_stalls_only_its_own_task(registry: Registry, source: tuple[Path, dict[str, list[str]]]) -> None:
    made = source[1]
    hung = HungRegistry(registry.root, "current")
    # A healthy load builds the SHAP tables (seconds on a busy machine); the hung one never ends.
    holder = ModelHolder(hung, load_timeout_s=5.0)
    started = time.monotonic()
    holder.refresh()
    assert time.monotonic() - started < 15
    assert holder.get("next_year") is not None and holder.get("current") is None
    assert "took over 5 s" in holder.problems["current"]
    hung.promote("next_year", made["next_year"][1], reason="meanwhile")
    holder.refresh()  # the stuck load is skipped, the other task reloads
    assert holder.get("next_year").version == made["next_year"][1]  # type: ignore[union-attr]
    hung.release.set()
    deadline = time.monotonic() + 10
    while holder.get("current") is None and time.monotonic() < deadline:
        time.sleep(0.05)
        holder.refresh()
    assert holder.get("current").version == made["current"][0]  # type: ignore[union-attr]
