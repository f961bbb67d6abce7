"""Holds the champion model of each task and swaps in a new one when its pointer changes.

The service never opens the warehouse: it reads the registry's files and pointers only. A
background thread polls each task's champion pointer (a stat and a small read); on a change it
loads the new version, checks it (hash, feature contract, a prediction on the stored check
row) and swaps it in with one reference assignment, so a request in flight finishes on the
model it started with. A version that fails to load or check is refused and logged, and the
previous model keeps serving; the problem is reported by ``/ready`` and ``/model``.

Files are read bounded (regular files only, a size limit, a deadline: see ``Registry``), and
each load runs in a worker thread the poller waits for at most ``load_timeout_s``: a file that
blocks reads (a FIFO, a device, a hung mount) stalls only its own task, never the poller or the
other task. A refused version is tried again when its files change, not only when the pointer does.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from features.featuresets import TASKS, feature_names
from modeling.registry import METADATA_FILE, MODEL_FILE, Registry
from modeling.registry_checks import check_pointer
from passos.errors import PassosError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    """A checked model and what the API says about it."""

    task: str
    version: str
    model: Any
    metadata: dict[str, Any]
    importance: dict[str, float] = field(default_factory=dict)  # global, sums to 1: what an answer covered
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    variant_importance: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def threshold(self) -> float:
        return float(self.model.threshold)


class ModelHolder:
    """The current model per task, kept in step with the registry's champion pointers."""

    def __init__(
        self,
        registry: Registry,
        *,
        tasks: tuple[str, ...] = TASKS,
        interval_s: float = 0.5,
        load_timeout_s: float = 35.0,
    ) -> None:
        self.registry = registry
        self.tasks = tasks
        self.interval_s = interval_s
        self.load_timeout_s = load_timeout_s
        self._refused: dict[str, str] = {}  # task -> the version refused last, retried when its files change
        self._loading: dict[str, threading.Thread] = {}  # task -> a load still stuck after load_timeout_s
        self._models: dict[str, Loaded] = {}
        self._signatures: dict[str, Any] = {}
        self.problems: dict[str, str] = {}
        self.reloads = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self, task: str) -> Loaded | None:
        """The model serving ``task`` now (None when there is none)."""
        return self._models.get(task)

    def ready(self) -> bool:
        """Whether every task has a model."""
        return all(task in self._models for task in self.tasks)

    def refresh(self) -> None:
        """Check every pointer once and load what changed (what the background thread does)."""
        for task in self.tasks:
            stuck = self._loading.get(task)
            if stuck is not None and stuck.is_alive():
                continue  # its read still blocks: this task waits, the others reload
            try:
                pointer = self.registry.pointer_signature(task)
            except (OSError, PassosError) as error:
                self._refuse(task, None, f"champion pointer unreadable: {error}")
                continue
            signature = (pointer, self._refused_files(task))
            if signature == self._signatures.get(task):
                continue
            self._signatures[task] = signature
            if pointer is None:
                if task not in self._models:
                    self.problems[task] = "no champion yet: run `passos train`"
                continue
            self._load_within_timeout(task)
            if task not in self._loading:  # the refused version's files as they are now: a change retries
                self._signatures[task] = (pointer, self._refused_files(task))

    def _refused_files(self, task: str) -> tuple[Any, ...] | None:
        """A fingerprint of the refused version's files (stat only, never a read), or None."""
        version = self._refused.get(task)
        if version is None:
            return None
        prints: list[Any] = [version]
        for name in (MODEL_FILE, METADATA_FILE):
            path = self.registry.path(task, version) / name
            try:
                link, target = os.lstat(path), os.stat(path)
            except OSError:
                prints.append(None)
                continue
            prints.append((link.st_ino, link.st_mtime_ns, target.st_ino, target.st_size, target.st_mtime_ns))
        return tuple(prints)

    def _load_within_timeout(self, task: str) -> None:
        worker = threading.Thread(target=self._load, args=(task,), name=f"passos-load-{task}", daemon=True)
        worker.start()
        worker.join(self.load_timeout_s)
        self._loading.pop(task, None)
        if worker.is_alive():
            self._loading[task] = worker
            self._signatures.pop(task, None)  # look again once the stuck read ends
            self._refuse(task, None, f"loading the champion took over {self.load_timeout_s:g} s (a file that blocks?)")

    def _load(self, task: str) -> None:
        try:
            version = self.registry.champion(task)
        except (OSError, PassosError, ValueError) as error:
            self._refuse(task, None, f"champion pointer unreadable: {error}")
            return
        if version is None:
            return
        current = self._models.get(task)
        if current is not None and current.version == version:
            self.problems.pop(task, None)
            return
        try:
            model, metadata = self.registry.load_checked(task, version)
            gate = metadata.get("gate")
            if not (isinstance(gate, dict) and gate.get("accepted") is True):
                reasons = gate.get("reasons") if isinstance(gate, dict) else None
                why = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) and reasons else "no gate verdict"
                raise PassosError(f"the gate did not accept this version ({why}); a rejected model is never served")
            check_pointer(self.registry.pointer(task), version, metadata)
            expected = feature_names(task)
            if list(model.feature_names) != expected:
                raise PassosError(f"feature contract {list(model.feature_names)} differs from the service's {expected}")
            score = float(model.predict_proba(np.full((1, len(expected)), np.nan))[0])
            if not 0.0 <= score <= 1.0:
                raise PassosError(f"score {score} on an empty row is not a probability")
        except Exception as error:  # any failure to load must leave the old model serving
            self._refused[task] = version
            self._refuse(task, version, str(error))
            return
        self._refused.pop(task, None)
        variants = {getattr(v, "variant", "?"): _importance(v) for v in getattr(model, "variants", [])}
        self._models[task] = Loaded(task, version, model, metadata, _importance(model), variant_importance=variants)
        self.problems.pop(task, None)
        self.reloads += 1
        log.info("serving %s model %s", task, version)

    def _refuse(self, task: str, version: str | None, problem: str) -> None:
        message = f"refused {version}: {problem}" if version else problem
        if self.problems.get(task) != message:
            log.error("%s: %s; %s", task, message, "keeping the previous model" if task in self._models else "")
        self.problems[task] = message

    def start(self) -> None:
        """Load now, then follow the pointers in a daemon thread."""
        self.refresh()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="passos-model-reload", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.refresh()
            except Exception:  # the reload thread must never die
                log.exception("model refresh failed")

    def stop(self) -> None:
        """Stop following the pointers."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _importance(model: Any) -> dict[str, float]:
    """The model's global importance per feature, computed once at load (empty when it has none)."""
    try:
        return {name: float(value) for name, value in model.feature_importance().items()}
    except (AttributeError, TypeError, ValueError):
        return {}
