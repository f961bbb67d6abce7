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

This module is the store of versions and the promotion that moves the pointer; the pointer
file itself is :mod:`modeling.registry_pointer`, the checks a model passes on save and load
are :mod:`modeling.registry_checks`, the bounded reads and durable writes are
:mod:`modeling.registry_files`, and the warehouse's copy is :mod:`modeling.registry_mirror`.

The model is any picklable object with ``feature_names`` and ``predict_proba(X) -> scores``
(one positive-class score per row). Loading unpickles it, so only load registries you trust;
the stored sha256 is checked *before* unpickling, which catches corruption and casual edits.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib

from modeling.registry_checks import (
    METADATA_FILE,
    MODEL_FILE,
    accepted,
    float_or_none,
    metadata_digest,
    test_metrics,
    unpickle_checked,
    verify_model,
)
from modeling.registry_errors import (
    CorruptPointerError,
    NoPreviousChampionError,
    PromotionRefusedError,
    RegistryError,
    VersionExistsError,
)
from modeling.registry_files import (
    NAME,
    check_name,
    dumps,
    fsync_dir,
    fsync_tree,
    json_ready,
    process_alive,
    read_bounded,
    sha256_file,
    write_bytes,
)
from modeling.registry_pointer import POINTER_FILE, read_pointer, task_lock, write_pointer
from modeling.registry_pointer import signature as pointer_signature
from passos.errors import ModelInvalidError, ModelNotFoundError

if TYPE_CHECKING:
    from passos.settings import Settings


logger = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"
RESERVED_KEYS = ("version", "task", "created_at", "model_sha256", "metadata_sha256")
METADATA_MAX_BYTES = 16 * 1024 * 1024


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
        return self._task_dir(task) / check_name(version, "version")

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
        version = check_name(version or self.new_version(), "version")
        task_dir = self._task_dir(task)
        final = task_dir / version
        if final.exists():
            raise VersionExistsError(f"version {version} of task {task!r} already exists at {final}")
        own = {"version": version, "task": task}
        for key in RESERVED_KEYS:
            if key in metadata and (key not in own or metadata[key] != own[key]):
                raise ValueError(f"metadata key {key!r} is set by the registry; do not pass it")
        meta = json_ready(dict(metadata))
        meta["check_score"] = verify_model(model, meta, where=f"candidate {task}/{version}", at_save=True)

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
                model_sha256=sha256_file(model_path),
            )
            if meta["check_score"] is None:
                del meta["check_score"]
            meta["metadata_sha256"] = metadata_digest(meta)
            write_bytes(temp / METADATA_FILE, dumps(meta))
            fsync_tree(temp)
            try:
                os.rename(temp, final)
            except OSError as exc:  # a concurrent save of the same version won the rename
                raise VersionExistsError(f"version {version} of task {task!r} already exists") from exc
            fsync_dir(task_dir)
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
        model = unpickle_checked(data, meta, where=where)
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
                        "accepted": accepted(meta),
                        "is_champion": version == champion,
                        "metrics": test_metrics(meta),
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
        check_name(version, "version")
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
                if pid.isdigit() and not process_alive(int(pid)):
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
        return read_pointer(self.pointer_path(task), timeout_s=self.read_timeout_s)

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
        return pointer_signature(self.pointer_path(task))

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
        verdict = accepted(meta)
        if verdict is not True:
            why = "rejected by the gate" if verdict is False else "has no gate verdict"
            gate = meta.get("gate")
            reasons = gate.get("reasons") if isinstance(gate, dict) else None
            detail = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else ""
            raise PromotionRefusedError(
                f"version {version} of task {task!r} {why}; a model the gate did not accept "
                f"never becomes champion" + (f" ({detail})" if detail else "")
            )
        self.load_checked(task, version)
        with task_lock(self._task_dir(task)):
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
        with task_lock(self._task_dir(task)):
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
                    "test_recall": float_or_none(test.get("recall")),
                    "test_precision": float_or_none(test.get("precision")),
                    "test_roc_auc": float_or_none(test.get("roc_auc")),
                    "protocol": meta.get("protocol"),
                    "training_data_sha256": meta.get("training_data_sha256"),
                    "code_version": meta.get("code_version"),
                }
            )
        return rows

    # ---- internals ------------------------------------------------------------------------

    def _task_dir(self, task: str) -> Path:
        return self.root / check_name(task, "task")

    def _tasks(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and NAME.match(p.name))

    def _iter_metadata(self, task: str) -> Iterator[tuple[str, dict[str, Any]]]:
        task_dir = self._task_dir(task)
        if not task_dir.is_dir():
            return
        for entry in sorted(task_dir.iterdir()):
            if not entry.is_dir() or not NAME.match(entry.name):
                continue  # temp dirs of unfinished saves start with "."
            try:
                yield entry.name, self.metadata(task, entry.name)
            except (ModelNotFoundError, ModelInvalidError) as exc:
                logger.warning("skipping %s: %s", entry, exc)

    def _write_pointer(
        self, task: str, version: str, *, reason: str, history: list[str], meta: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        meta = self.metadata(task, version) if meta is None else meta
        return write_pointer(
            self.pointer_path(task), task=task, version=version, reason=reason, history=history, meta=meta
        )
