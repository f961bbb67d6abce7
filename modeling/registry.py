"""A file-based model registry: immutable versions and an atomic champion pointer per task.

Layout::

    root/<task>/<version>/model.joblib      the pickled model
    root/<task>/<version>/metadata.json     what it is, how it was trained, its gate verdict
    root/<task>/<version>/...               any extra files (card.md, plots/*.png)
    root/<task>/champion.json               the pointer: which version serves, and its history
    root/<task>/.lock                       flock'd while the pointer is read-modified-written

A version is written into a hidden ``.tmp-<version>-<pid>-<hex>`` directory and renamed into place
only once complete, so a process killed mid-save never leaves a half-written version visible.
The pointer is written to a temporary file, fsync'd, then ``os.replace``'d: readers see the
old pointer or the new one, never a torn one.

The model is any picklable object with ``feature_names`` and ``predict_proba(X) -> scores``
(one positive-class score per row). Loading unpickles it, so only load registries you trust;
the stored sha256 is checked *before* unpickling, which catches corruption and casual edits.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import math
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np

from passos.errors import ModelInvalidError, ModelNotFoundError, PassosError

if TYPE_CHECKING:
    from passos.settings import Settings

logger = logging.getLogger(__name__)

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
POINTER_FILE = "champion.json"
LOCK_FILE = ".lock"
TEMP_PREFIX = ".tmp-"
CHECK_TOLERANCE = 1e-9
RESERVED_KEYS = ("version", "task", "created_at", "model_sha256", "metadata_sha256")

METADATA_MAX_BYTES = 16 * 1024 * 1024
POINTER_MAX_BYTES = 1024 * 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class RegistryError(PassosError):
    """A registry operation that cannot be done as asked."""


class VersionExistsError(RegistryError):
    """A version is saved twice; versions are immutable."""


class PromotionRefusedError(RegistryError):
    """A version that the gate did not accept cannot become champion."""


class NoPreviousChampionError(RegistryError):
    """A rollback with no earlier champion to return to."""


class UnsafeFileError(ModelInvalidError):
    """A registry file that is not a regular file, is over its size limit, or reads too slowly."""


class CorruptPointerError(RegistryError):
    """A champion pointer that is not the JSON the registry writes (edited by hand?)."""


class Registry:
    """Model versions and champion pointers under one root directory.

    Creating a ``Registry`` touches nothing on disk; directories appear on the first save.
    """

    def __init__(self, root: Path, *, max_model_bytes: int = 512 * 1024 * 1024, read_timeout_s: float = 30.0) -> None:
        """Use ``root`` (e.g. ``$PASSOS_HOME/models``) as the registry's directory.

        Args:
            root: The registry's directory.
            max_model_bytes: The largest ``model.joblib`` read (a bigger file is refused unread).
            read_timeout_s: The time allowed to read one file (checked between chunks).
        """
        self.root = Path(root)
        self.max_model_bytes = max_model_bytes
        self.read_timeout_s = read_timeout_s

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        """The registry at ``settings.models_dir``."""
        return cls(
            settings.models_dir, max_model_bytes=settings.model_max_bytes, read_timeout_s=settings.model_read_timeout_s
        )

    # ---- versions ---------------------------------------------------------------------

    @staticmethod
    def new_version() -> str:
        """A new version id: UTC time, sortable, plus random hex, e.g. ``v20261126T143012Z-1a2b3c4d``."""
        return f"v{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"

    def path(self, task: str, version: str) -> Path:
        """The directory of a version (whether or not it exists)."""
        return self._task_dir(task) / _check_name(version, "version")

    def save(
        self,
        task: str,
        model: Any,
        metadata: dict[str, Any],
        *,
        version: str | None = None,
        extra_files: Callable[[Path], None] | None = None,
    ) -> str:
        """Store a model as a new, immutable version.

        The model is checked before anything is written: its ``feature_names`` must equal the
        names in ``metadata["features"]`` (a list of dicts with ``name``), and when
        ``metadata["check_input"]`` (one row of floats) is given, its score is stored as
        ``check_score`` (computed here when absent, verified here when present).
        ``load_checked`` repeats these checks on the unpickled copy.

        Args:
            task: The prediction task, e.g. ``"current"``.
            model: A picklable object with ``feature_names`` and ``predict_proba``.
            metadata: JSON-able facts about the model; NaN/inf are stored as null. The keys
                ``version``, ``task``, ``created_at`` and ``model_sha256`` are added here.
            version: The version id; a new one when None.
            extra_files: Called with the (temporary) version directory to write more files
                into it, e.g. ``card.md`` or ``plots/*.png``.

        Returns:
            The version id.

        Raises:
            VersionExistsError: The version already exists for this task.
            ModelInvalidError: The model cannot be pickled or fails its checks.
            ValueError: Bad task/version name, or metadata that sets a reserved key or
                holds a value JSON cannot store.
        """
        version = _check_name(version or self.new_version(), "version")
        task_dir = self._task_dir(task)
        final = task_dir / version
        if final.exists():
            raise VersionExistsError(f"version {version} of task {task!r} already exists at {final}")
        own = {"version": version, "task": task}
        for key in RESERVED_KEYS:
            if key in metadata and (key not in own or metadata[key] != own[key]):
                raise ValueError(f"metadata key {key!r} is set by the registry; do not pass it")
        meta = _json_ready(dict(metadata))
        meta["check_score"] = _verify_model(model, meta, where=f"candidate {task}/{version}", at_save=True)

        task_dir.mkdir(parents=True, exist_ok=True)
        self.remove_stale_temp(task)  # a save killed earlier (kill -9) is cleaned at the next write
        # pid: lets remove_stale_temp tell a crashed save from a running one; hex: two saves
        # in one process (threads) never share a directory.
        temp = task_dir / f"{TEMP_PREFIX}{version}-{os.getpid()}-{secrets.token_hex(4)}"
        temp.mkdir()
        try:
            model_path = temp / MODEL_FILE
            try:
                joblib.dump(model, model_path)
            except Exception as exc:  # pickling raises many types (PicklingError, TypeError, ...)
                raise ModelInvalidError(
                    f"model for {task}/{version} cannot be pickled: {type(exc).__name__}: {exc}"
                ) from exc
            if extra_files is not None:
                extra_files(temp)
            meta.update(
                version=version,
                task=task,
                created_at=datetime.now(UTC).isoformat(),
                model_sha256=_sha256(model_path),
            )
            if meta["check_score"] is None:
                del meta["check_score"]
            meta["metadata_sha256"] = metadata_digest(meta)
            _write_bytes(temp / METADATA_FILE, _dumps(meta))
            _fsync_tree(temp)
            try:
                os.rename(temp, final)
            except OSError as exc:  # a concurrent save of the same version won the rename
                raise VersionExistsError(f"version {version} of task {task!r} already exists") from exc
            _fsync_dir(task_dir)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        logger.info("saved model %s/%s (sha256 %s)", task, version, meta["model_sha256"][:12])
        return version

    def metadata(self, task: str, version: str) -> dict[str, Any]:
        """The stored metadata of a version.

        Raises:
            ModelNotFoundError: No such version.
            ModelInvalidError: The metadata file is not valid JSON.
        """
        path = self.path(task, version) / METADATA_FILE
        try:
            raw = read_bounded(path, max_bytes=METADATA_MAX_BYTES, timeout_s=self.read_timeout_s)
        except FileNotFoundError:
            raise ModelNotFoundError(f"no version {version} of task {task!r} in {self.root}") from None
        try:
            meta = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelInvalidError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(meta, dict):
            raise ModelInvalidError(f"{path} holds a {type(meta).__name__}, not an object")
        return meta

    def load_checked(self, task: str, version: str) -> tuple[Any, dict[str, Any]]:
        """Load a version and prove it is the model that was saved.

        Checks, in order: the file's sha256 against ``metadata["model_sha256"]`` (before
        unpickling), that it unpickles, that ``model.feature_names`` equals the names in
        ``metadata["features"]``, and, when a check row is stored, that
        ``model.predict_proba([check_input])[0]`` equals ``check_score`` within 1e-9.

        Returns:
            ``(model, metadata)``.

        Raises:
            ModelNotFoundError: No such version.
            ModelInvalidError: Any failed check, corrupt or truncated file, or unpicklable model.
        """
        meta = self.metadata(task, version)
        model_path = self.path(task, version) / MODEL_FILE
        where = f"model {task}/{version}"
        # Read once, bounded, and unpickle those very bytes: the file hashed is the file loaded.
        try:
            data = read_bounded(model_path, max_bytes=self.max_model_bytes, timeout_s=self.read_timeout_s)
        except OSError as exc:
            raise ModelInvalidError(f"{where}: cannot read {model_path}: {exc}") from exc
        digest = hashlib.sha256(data).hexdigest()
        if digest != meta.get("model_sha256"):
            raise ModelInvalidError(
                f"{where}: {MODEL_FILE} sha256 {digest[:12]}… does not match the recorded "
                f"{str(meta.get('model_sha256'))[:12]}… (file corrupted or replaced)"
            )
        if "metadata_sha256" in meta:
            if meta["metadata_sha256"] != metadata_digest(meta):
                raise ModelInvalidError(
                    f"{where}: {METADATA_FILE} was changed after it was saved (its gate verdict, metrics "
                    "and model hash are hashed together): retrain rather than edit it"
                )
        else:
            logger.warning("%s: %s predates metadata hashing; its gate verdict is not checked", where, METADATA_FILE)
        try:
            model = joblib.load(io.BytesIO(data))
        except Exception as exc:  # unpickling raises anything: EOFError, AttributeError, ...
            raise ModelInvalidError(f"{where}: cannot unpickle: {type(exc).__name__}: {exc}") from exc
        _verify_model(model, meta, where=where)
        return model, meta

    def list_versions(self, task: str | None = None) -> list[dict[str, Any]]:
        """Summaries of the stored versions, newest first.

        Args:
            task: Only this task's versions; all tasks when None.

        Returns:
            Dicts with ``task, version, created_at, kind, accepted, is_champion, metrics``
            (``metrics`` is ``metadata["metrics"]["test"]`` or None). Temporary directories
            of unfinished saves are ignored; a version whose metadata is unreadable is
            skipped with a warning.
        """
        summaries = []
        for task_name in [task] if task is not None else self._tasks():
            try:
                champion = self.champion(task_name)
            except CorruptPointerError as exc:
                logger.warning("listing %s without a champion: %s", task_name, exc)
                champion = None
            for version, meta in self._iter_metadata(task_name):
                summaries.append(
                    {
                        "task": task_name,
                        "version": version,
                        "created_at": meta.get("created_at"),
                        "kind": meta.get("kind"),
                        "accepted": _accepted(meta),
                        "is_champion": version == champion,
                        "metrics": _test_metrics(meta),
                    }
                )
        summaries.sort(key=lambda row: (str(row["created_at"]), row["version"]), reverse=True)
        return summaries

    def find(self, version: str) -> str:
        """The task a version belongs to.

        Raises:
            ModelNotFoundError: No task has this version.
            RegistryError: More than one task has it (only possible with hand-picked ids).
        """
        _check_name(version, "version")
        tasks = [task for task in self._tasks() if (self.root / task / version / METADATA_FILE).is_file()]
        if not tasks:
            raise ModelNotFoundError(f"no task has a version {version} in {self.root}")
        if len(tasks) > 1:
            raise RegistryError(f"version {version} exists in several tasks: {', '.join(tasks)}")
        return tasks[0]

    def remove_stale_temp(self, task: str | None = None) -> list[Path]:
        """Delete the temporary directories of saves whose process is gone (same host only).

        Returns:
            The directories removed.
        """
        removed = []
        for task_name in [task] if task is not None else self._tasks():
            task_dir = self._task_dir(task_name)
            if not task_dir.is_dir():
                continue
            for entry in task_dir.iterdir():
                if not (entry.is_dir() and entry.name.startswith(TEMP_PREFIX)):
                    continue
                pid = entry.name.rsplit("-", 2)[-2]
                if pid.isdigit() and not _process_alive(int(pid)):
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
                    logger.info("removed the leftover of an interrupted save: %s", entry)
        return removed

    # ---- champion pointer ---------------------------------------------------------------

    def pointer_path(self, task: str) -> Path:
        """The champion pointer file of a task."""
        return self._task_dir(task) / POINTER_FILE

    def pointer(self, task: str) -> dict[str, Any] | None:
        """The champion pointer (``task, version, promoted_at, reason, history``), or None.

        Raises:
            CorruptPointerError: The file is not a pointer the registry wrote.
        """
        path = self.pointer_path(task)
        try:
            raw = read_bounded(path, max_bytes=POINTER_MAX_BYTES, timeout_s=self.read_timeout_s)
        except FileNotFoundError:
            return None
        except UnsafeFileError as exc:
            raise CorruptPointerError(str(exc)) from exc
        try:
            pointer = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptPointerError(f"{path} is not valid JSON: {exc}") from exc
        if (
            not isinstance(pointer, dict)
            or not isinstance(pointer.get("version"), str)
            or not isinstance(pointer.get("history"), list)
        ):
            raise CorruptPointerError(f"{path} lacks a 'version' string or a 'history' list")
        return pointer

    def champion(self, task: str) -> str | None:
        """The champion version of a task, or None when nothing was promoted yet."""
        pointer = self.pointer(task)
        return None if pointer is None else pointer["version"]

    def pointer_signature(self, task: str) -> tuple[int, int, int, str] | None:
        """A cheap fingerprint of the pointer file, for a serving process to poll.

        It is ``(st_mtime_ns, st_size, st_ino, sha256 of the content)``, read through one
        open file descriptor. Every promote or rollback replaces the file (new inode) and
        writes a new ``promoted_at``, so the content hash changes even if the inode number
        is reused and the mtime is coarse. Costs one stat and one read of a small file.

        Returns:
            The fingerprint, or None when the task has no pointer.
        """
        path = self.pointer_path(task)
        try:
            fd = _open_regular(path)
        except FileNotFoundError:
            return None
        except UnsafeFileError as exc:
            raise CorruptPointerError(str(exc)) from exc
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            content = handle.read(POINTER_MAX_BYTES + 1)
        return (info.st_mtime_ns, info.st_size, info.st_ino, hashlib.sha256(content).hexdigest())

    def promote(self, task: str, version: str, *, reason: str) -> dict[str, Any]:
        """Make a version the task's champion.

        Only a version whose ``metadata["gate"]["accepted"]`` is true can be promoted: a
        rejected model, or one never put through the gate, is refused; there is no override.
        The version must also pass ``load_checked``, so the serving process never gets a
        pointer to a model it cannot load. Promoting the current champion changes nothing.

        Args:
            task: The task.
            version: The version to serve.
            reason: Why, for the record (e.g. ``"weekly retrain, gate passed"``).

        Returns:
            The pointer as written.

        Raises:
            ModelNotFoundError: No such version.
            PromotionRefusedError: The gate did not accept the version.
            ModelInvalidError: The version fails ``load_checked``.
        """
        meta = self.metadata(task, version)
        accepted = _accepted(meta)
        if accepted is not True:
            why = "rejected by the gate" if accepted is False else "has no gate verdict"
            gate = meta.get("gate")
            reasons = gate.get("reasons") if isinstance(gate, dict) else None
            detail = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else ""
            raise PromotionRefusedError(
                f"version {version} of task {task!r} {why}; a model the gate did not accept "
                f"never becomes champion" + (f" ({detail})" if detail else "")
            )
        self.load_checked(task, version)
        with self._lock(task):
            current = self.pointer(task)
            if current is not None and current["version"] == version:
                if current.get("metadata_sha256") == meta.get("metadata_sha256"):
                    logger.info("%s/%s is already champion; pointer unchanged", task, version)
                    return current
                history = list(current["history"])  # a pointer edited by hand to this version: rewritten
            else:
                history = [] if current is None else [*current["history"], current["version"]]
            pointer = self._write_pointer(task, version, reason=reason, history=history, meta=meta)
        logger.info("promoted %s/%s (previous: %s): %s", task, version, history[-1:] or None, reason)
        return pointer

    def rollback(self, task: str, *, reason: str = "rollback") -> str:
        """Make the previous champion the champion again.

        The current champion is dropped from the pointer (the history is a stack, newest
        last), so two rollbacks go back two promotions.

        Returns:
            The version now champion.

        Raises:
            NoPreviousChampionError: No champion, or no earlier one.
            ModelInvalidError: The previous champion no longer passes ``load_checked``.
        """
        with self._lock(task):
            current = self.pointer(task)
            if current is None or not current["history"]:
                raise NoPreviousChampionError(
                    f"task {task!r} has no previous champion to roll back to "
                    f"(champion: {None if current is None else current['version']})"
                )
            previous = current["history"][-1]
            _, meta = self.load_checked(task, previous)
            self._write_pointer(
                task,
                previous,
                reason=f"{reason} (from {current['version']})",
                history=current["history"][:-1],
                meta=meta,
            )
        logger.info("rolled %s back from %s to %s", task, current["version"], previous)
        return previous

    # ---- warehouse rows -------------------------------------------------------------------

    def registry_rows(self, task: str | None = None) -> list[dict[str, Any]]:
        """One flat row per version, for the warehouse table ``model_registry``, newest first.

        Columns: ``version, task, created_at, kind, accepted, is_champion, test_recall,
        test_precision, test_roc_auc, protocol, training_data_sha256, code_version``
        (None where the metadata does not say).
        """
        rows = []
        for summary in self.list_versions(task):
            meta = self.metadata(summary["task"], summary["version"])
            test = summary["metrics"] or {}
            rows.append(
                {
                    "version": summary["version"],
                    "task": summary["task"],
                    "created_at": summary["created_at"],
                    "kind": summary["kind"],
                    "accepted": summary["accepted"],
                    "is_champion": summary["is_champion"],
                    "test_recall": _float_or_none(test.get("recall")),
                    "test_precision": _float_or_none(test.get("precision")),
                    "test_roc_auc": _float_or_none(test.get("roc_auc")),
                    "protocol": meta.get("protocol"),
                    "training_data_sha256": meta.get("training_data_sha256"),
                    "code_version": meta.get("code_version"),
                }
            )
        return rows

    # ---- internals ------------------------------------------------------------------------

    def _task_dir(self, task: str) -> Path:
        return self.root / _check_name(task, "task")

    def _tasks(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name))

    def _iter_metadata(self, task: str) -> Iterator[tuple[str, dict[str, Any]]]:
        task_dir = self._task_dir(task)
        if not task_dir.is_dir():
            return
        for entry in sorted(task_dir.iterdir()):
            if not entry.is_dir() or not _NAME.match(entry.name):
                continue  # temp dirs of unfinished saves start with "."
            try:
                yield entry.name, self.metadata(task, entry.name)
            except (ModelNotFoundError, ModelInvalidError) as exc:
                logger.warning("skipping %s: %s", entry, exc)

    @contextlib.contextmanager
    def _lock(self, task: str) -> Iterator[None]:
        task_dir = self._task_dir(task)
        task_dir.mkdir(parents=True, exist_ok=True)
        # A separate lock file, never replaced: locking the pointer itself would lock an
        # inode that os.replace swaps away.
        with (task_dir / LOCK_FILE).open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _write_pointer(
        self, task: str, version: str, *, reason: str, history: list[str], meta: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        meta = self.metadata(task, version) if meta is None else meta
        pointer = {
            "task": task,
            "version": version,
            "promoted_at": datetime.now(UTC).isoformat(),
            "reason": reason,
            "history": history,
        }
        if "metadata_sha256" in meta:  # what check_pointer compares: the pointer was written for this version
            pointer["metadata_sha256"] = meta["metadata_sha256"]
        path = self.pointer_path(task)
        temp = path.with_name(f".{POINTER_FILE}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            _write_bytes(temp, _dumps(pointer))
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return pointer


# ---- helpers --------------------------------------------------------------------------------


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"invalid {what} {name!r}: use letters, digits, '_', '-', '.', not starting with '.'")
    return name


def _accepted(meta: dict[str, Any]) -> bool | None:
    gate = meta.get("gate")
    if not isinstance(gate, dict) or not isinstance(gate.get("accepted"), bool):
        return None
    return gate["accepted"]


def _test_metrics(meta: dict[str, Any]) -> dict[str, Any] | None:
    metrics = meta.get("metrics")
    test = metrics.get("test") if isinstance(metrics, dict) else None
    return test if isinstance(test, dict) else None


def _float_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _feature_contract(meta: dict[str, Any], where: str) -> list[str]:
    features = meta.get("features")
    if not isinstance(features, list) or not all(isinstance(f, dict) and "name" in f for f in features):
        raise ModelInvalidError(f"{where}: metadata 'features' must be a list of objects with a 'name'")
    return [str(f["name"]) for f in features]


def _verify_model(model: Any, meta: dict[str, Any], *, where: str, at_save: bool = False) -> float | None:
    """Check a model against its metadata; returns the check row's score (None without one).

    At save time a missing ``check_score`` is computed; at load time it must be there.
    """
    expected = _feature_contract(meta, where)
    names: Any = getattr(model, "feature_names", None)
    try:
        actual = [str(name) for name in names]
    except TypeError:
        raise ModelInvalidError(f"{where}: model has no feature_names list (got {names!r})") from None
    if actual != expected:
        missing = [n for n in expected if n not in actual]
        extra = [n for n in actual if n not in expected]
        raise ModelInvalidError(
            f"{where}: model features {actual} do not match the metadata's {expected} "
            f"(missing {missing}, unexpected {extra}, or a different order)"
        )
    if not callable(getattr(model, "predict_proba", None)):
        raise ModelInvalidError(f"{where}: model has no predict_proba method")

    check_input = meta.get("check_input")
    if check_input is None:
        if meta.get("check_score") is not None:
            raise ModelInvalidError(f"{where}: metadata has check_score but no check_input")
        return None
    try:
        row = np.array([check_input], dtype=float)  # None (stored NaN) becomes NaN again
    except (TypeError, ValueError) as exc:
        raise ModelInvalidError(f"{where}: check_input is not a row of numbers: {exc}") from exc
    if row.shape != (1, len(expected)):
        raise ModelInvalidError(f"{where}: check_input has {row.size} values for {len(expected)} features")
    try:
        scores = np.asarray(model.predict_proba(row), dtype=float)
    except Exception as exc:  # the model's own code: any error means it is unusable
        raise ModelInvalidError(f"{where}: predict_proba fails on the check row: {exc!r}") from exc
    if scores.shape != (1,):
        raise ModelInvalidError(f"{where}: predict_proba must return one score per row, got shape {scores.shape}")
    score = float(scores[0])
    if not math.isfinite(score):
        raise ModelInvalidError(f"{where}: predict_proba scores the check row as {score!r}")
    expected_score = meta.get("check_score")
    if expected_score is None and at_save:
        return score
    expected_value = _float_or_none(expected_score)
    if expected_value is None or not abs(score - expected_value) <= CHECK_TOLERANCE:
        raise ModelInvalidError(
            f"{where}: check row scores {score!r}, but {expected_score!r} was recorded at save time "
            f"(tolerance {CHECK_TOLERANCE})"
        )
    return expected_value


def _json_ready(value: Any, path: str = "metadata") -> Any:
    """A copy with NaN/inf as None and numpy values as Python ones; rejects what JSON cannot hold."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist(), path)
    if isinstance(value, np.generic):
        return _json_ready(value.item(), path)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise ValueError(f"{path} holds a {type(value).__name__}, which JSON cannot store")


def metadata_digest(meta: dict[str, Any]) -> str:
    """The sha256 of a version's metadata (gate verdict and ``model_sha256`` included), itself left out."""
    content = {k: v for k, v in meta.items() if k != "metadata_sha256"}
    return hashlib.sha256(_dumps(json.loads(_dumps(content)))).hexdigest()


def check_pointer(pointer: dict[str, Any] | None, version: str, meta: dict[str, Any]) -> None:
    """Refuse a champion pointer that promote or rollback did not write for this version.

    A pointer edited by hand to name another version (a candidate held for review, say) still
    carries the hash of the version it was written for.

    Raises:
        PromotionRefusedError: The pointer's ``metadata_sha256`` is not this version's.
    """
    recorded = (pointer or {}).get("metadata_sha256")
    if "metadata_sha256" in meta and recorded != meta["metadata_sha256"]:
        raise PromotionRefusedError(
            f"the champion pointer names {version} but was not written for it by `passos models promote` "
            f"or rollback (edited by hand?); promote it with `passos models promote`"
        )


def _dumps(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, sort_keys=True, indent=2, allow_nan=False) + "\n").encode()


def _open_regular(path: Path) -> int:
    """Open ``path`` for reading without blocking on a FIFO or device; refuse anything but a regular file.

    Returns:
        The open file descriptor (blocking mode restored).

    Raises:
        FileNotFoundError: No such file.
        UnsafeFileError: A FIFO, device, socket or directory (e.g. a model.joblib linked to /dev/zero).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UnsafeFileError(f"{path.name} is not a regular file (mode {stat.filemode(info.st_mode)}); not read")
    os.set_blocking(fd, True)
    return fd


def read_bounded(path: Path, *, max_bytes: int, timeout_s: float) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, read within ``timeout_s`` (checked per chunk).

    Raises:
        FileNotFoundError: No such file.
        UnsafeFileError: Not a regular file, larger than ``max_bytes`` (also when it grows while
            read), or slower than ``timeout_s``.
    """
    fd = _open_regular(path)
    deadline = time.monotonic() + timeout_s
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise UnsafeFileError(f"{path.name} is {size} bytes, over the limit of {max_bytes}; not read")
        chunks, total = [], 0
        while chunk := handle.read(1 << 20):
            total += len(chunk)
            if total > max_bytes:
                raise UnsafeFileError(f"{path.name} grew past the limit of {max_bytes} bytes while read")
            if time.monotonic() > deadline:
                raise UnsafeFileError(f"{path.name} took over {timeout_s:g} s to read")
            chunks.append(chunk)
    return b"".join(chunks)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_bytes(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flush every file and directory under ``root`` so the rename publishes durable data."""
    for directory, _subdirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(directory))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
