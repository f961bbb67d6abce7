"""State homes for tests: factory models (fast, figures planted) and one trained on the real data."""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from modeling.registry import Registry
from passos.settings import Settings, get_settings
from tests.factories import register_model

# The recall floors the real-data home is trained with (the original design's 0.75 for both tasks).
TRAINED_ENV = {"PASSOS_GATE_MIN_RECALL_CURRENT": "0.75", "PASSOS_GATE_MIN_RECALL_NEXT_YEAR": "0.75"}


def build_factory_home(home: Path) -> Path:
    """A registry of factory models under ``home``: two accepted versions per task, the first champion."""
    registry = Registry(home / "models")
    for task in ("current", "next_year"):
        first = register_model(registry, task, kind="lightgbm", seed=0)
        register_model(registry, task, kind="logistic", seed=1)
        registry.promote(task, first, reason="test setup")
    return home


@contextmanager
def home_settings(home: Path, env: Mapping[str, str] | None = None) -> Iterator[Settings]:
    """``get_settings()`` reads ``home`` (and ``env``) inside the block; restored on the way out."""
    patch = pytest.MonkeyPatch()
    patch.setenv("PASSOS_HOME", str(home))
    for key, value in (env or {}).items():
        patch.setenv(key, value)
    get_settings.cache_clear()
    try:
        yield get_settings()
    finally:
        patch.undo()
        get_settings.cache_clear()


@dataclass
class TrainedHome:
    """A home where ``passos run``'s pipeline ran on the real files: warehouse, champions, scores, reports."""

    settings: Settings
    state: Any  # the pipeline flow's final Prefect state
    result: Any  # what the pipeline flow returned

    @property
    def home(self) -> Path:
        return self.settings.home

    def copy_to(self, target: Path) -> Path:
        """A copy of the home that a test may change (batch outputs and Prefect state left out)."""
        shutil.copytree(self.home, target, ignore=shutil.ignore_patterns("batch_scores", "prefect"))
        return target


def build_trained_home(home: Path, data_dir: Path) -> TrainedHome:
    """Run the pipeline flow (ingest, train both tasks, score, drift) on ``data_dir`` into ``home``.

    Needs a Prefect API (the ``prefect_harness`` fixture). The recall floors are :data:`TRAINED_ENV`.
    """
    from flows.pipeline import pipeline_flow

    with home_settings(home, TRAINED_ENV) as settings:
        state = pipeline_flow(data_dir=str(data_dir), return_state=True)
        result = state.result(raise_on_failure=False)  # type: ignore[attr-defined]  # a State, run synchronously
    return TrainedHome(settings, state, result)


def shared_trained_home(golden: Path, own: Path, data_dir: Path) -> TrainedHome:
    """:func:`build_trained_home` once per test run, however many pytest-xdist workers ask; a copy each.

    The first worker to ask builds the home at ``golden`` under a file lock (the others wait for it),
    then every worker gets its own copy at ``own``: tests change their session's home (a rejected
    candidate, a forced drift check), and no worker sees another's changes. ``golden`` is never
    written after it is built, so paths recorded inside it (reports, call list) stay valid.
    """
    built = golden / "built.pickle"
    with FileLock(f"{golden}.lock"):
        if not built.exists():
            home = build_trained_home(golden / "home", data_dir)
            built.write_bytes(pickle.dumps((home.state, home.result)))
    state, result = pickle.loads(built.read_bytes())
    shutil.copytree(golden / "home", own, ignore=shutil.ignore_patterns("prefect", "*.lock"), dirs_exist_ok=True)
    with home_settings(own, TRAINED_ENV) as settings:
        return TrainedHome(settings, state, result)
