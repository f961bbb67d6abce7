"""The local prediction log: append-only JSON Lines files, written off the request path.

Every prediction the service makes becomes one JSON object on one line. The drift flow
reads the files back with :func:`read_records` and loads them into the warehouse.

Files live in ``settings.predictions_dir`` and are named
``predictions-<UTC yyyymmddTHHMMSS>-<pid>-<seq>.jsonl`` (``seq`` is six digits and counts
the files of one process), so several worker processes never share a file. A file is
closed and a new one started before a line would make it larger than
``predictions_rotate_bytes``, or once it has been open ``predictions_rotate_seconds``; a
single longer line gets a file of its own. Each time it opens a file, the writer holds the
folder under ``predictions_max_bytes`` (:mod:`serving.prediction_retention`, which also
deletes the files the warehouse has loaded).

Record schema (one object per line, UTF-8):
    ``ts`` (str): when the prediction was made, ISO 8601 in UTC, added if missing.
    ``request_id`` (str): the request's id, shared with the Langfuse trace.
    ``endpoint`` (str): the route that answered, e.g. ``"predict"`` or ``"predict_batch"``.
    ``task`` (str): ``"current"`` or ``"next_year"``.
    ``model_version`` (str | null): version of the model that answered.
    ``latency_ms`` (float): time the prediction took.
    ``inputs`` (object): feature name to value; non-finite numbers are written as null.
    ``risk_score`` (float | null): predicted probability of setback.
    ``risk_label`` (str | null): ``"high"`` when the score is at or above the answering variant's threshold, ``"low"`` below it, ``"unknown"`` when no variant could answer (``modeling.scoring.risk_label``).
    ``student_hash`` (str, optional): :func:`hash_student_id` of the student id.
    ``error`` (str, optional): why the prediction failed.

The log never holds a student's name or raw id: :meth:`PredictionLog.append` removes keys
named ``nome``, ``nome_anonimizado``, ``name``, ``ra`` or ``student_id`` (any case, spaces
or hyphens for underscores) from the record and from its ``inputs``.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import logging
import math
import os
import queue
import re
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from serving.prediction_retention import enforce_bound

if TYPE_CHECKING:
    from passos.settings import Settings

logger = logging.getLogger(__name__)

PII_KEYS = frozenset({"nome", "nome_anonimizado", "name", "ra", "student_id"})
DEFAULT_QUEUE_SIZE = 100_000
DEFAULT_ROTATE_SECONDS = 3600.0
WRITE_INTERVAL_S = 0.05
FILE_PATTERN = re.compile(r"^predictions-(\d{8}T\d{6})-(\d+)-(\d+)\.jsonl$")

_STOP = object()


def hash_student_id(student_id: str, salt: str) -> str:
    """Pseudonymise a student id with a keyed hash.

    Args:
        student_id: The raw id (``RA``); surrounding spaces are ignored.
        salt: The secret salt (``PASSOS_ID_SALT``).

    Returns:
        The first 16 hex digits of HMAC-SHA256(salt, id): stable for one salt, and not
        reversible without it.
    """
    digest = hmac.new(salt.encode("utf-8"), str(student_id).strip().encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()[:16]


@lru_cache(maxsize=4096)  # the same few field names on every request
def _is_pii(key: object) -> bool:
    return isinstance(key, str) and key.strip().lower().replace(" ", "_").replace("-", "_") in PII_KEYS


def _without_pii(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in mapping.items() if not _is_pii(key)}


def coarsened(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """A student's inputs as the prediction log and the traces keep them: a birth date cut to its year.

    With the six indicators, a full birth date would single a student out even without any id.
    """
    out = dict(inputs)
    born = out.get("data_nasc")
    if isinstance(born, date):
        out["data_nasc"] = born.year
    elif isinstance(born, str) and len(born) >= 4 and born[:4].isdigit():
        out["data_nasc"] = int(born[:4])
    return out


def _jsonable(value: Any) -> Any:
    """Plain JSON values: NaN and infinities become null, numpy scalars Python numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas missing values
        return None
    item = getattr(value, "item", None)
    if callable(item):  # numpy and pandas scalars
        try:
            return _jsonable(item())
        except (TypeError, ValueError):
            pass
    return str(value)


class PredictionLog:
    """Append-only JSONL prediction log with a background writer thread.

    Attributes:
        directory: Where the files are written.
        written: Records on disk so far.
        dropped: Records lost (queue full, log closed, or a write failed).
    """

    def __init__(
        self,
        directory: Path,
        rotate_bytes: int,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        rotate_seconds: float = DEFAULT_ROTATE_SECONDS,
        max_bytes: int | None = None,
    ) -> None:
        """Create the directory, check it is writable and start the writer thread.

        Args:
            directory: Where the files go; created with its parents if missing.
            rotate_bytes: A file is not allowed to grow past this size.
            queue_size: Records held for the writer before new ones are dropped.
            rotate_seconds: A file is not written to once it has been open this long.
            max_bytes: The bound on the folder's log files, enforced (oldest first) each time a
                file is opened; None: unbounded.

        Raises:
            PermissionError: The directory cannot be created or written to for lack of rights.
            OSError: The directory cannot be created or written to for another reason
                (e.g. a file stands in its way); the message names the path.
        """
        if rotate_bytes < 1:
            raise ValueError(f"rotate_bytes must be positive, got {rotate_bytes}")
        self.directory = Path(directory)
        self.written = 0
        self.dropped = 0
        self._rotate_bytes = rotate_bytes
        self._rotate_seconds = rotate_seconds
        self._max_bytes = max_bytes
        self._opened_at = 0.0
        self._path: Path | None = None
        self._check_writable(self.directory)
        # Records go to a deque the writer drains every WRITE_INTERVAL_S: an append wakes no
        # thread, so the request path never hands the GIL to the writer per record (a
        # Queue.put_nowait did, and cost ~40 % of /predict in benchmarks/profile_api.py).
        # Flush and stop requests go through the control queue and wake the writer at once.
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        self._queue_size = queue_size
        self._queue: queue.Queue[Any] = queue.Queue()
        self._count_lock = threading.Lock()
        self._closed = False
        self._file: IO[str] | None = None
        self._file_size = 0
        self._seq = 0
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="passos-prediction-log", daemon=True)
        self._thread.start()

    @classmethod
    def from_settings(cls, settings: Settings) -> PredictionLog:
        """Open the log in ``settings.predictions_dir`` with the ``predictions_*`` settings."""
        return cls(
            settings.predictions_dir,
            settings.predictions_rotate_bytes,
            rotate_seconds=settings.predictions_rotate_seconds,
            max_bytes=settings.predictions_max_bytes,
        )

    @staticmethod
    def _check_writable(directory: Path) -> None:
        # os.access says yes to root even on a read-only mount, so write a real file instead.
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-", delete=True):
                pass
        except PermissionError as error:
            raise PermissionError(
                f"prediction log directory {directory} is not writable: {error.strerror or error}"
            ) from error
        except OSError as error:
            raise OSError(f"prediction log directory {directory} cannot be used: {error.strerror or error}") from error

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def append(self, record: Mapping[str, Any]) -> None:
        """Queue one record for writing; cheap, never blocks and never raises.

        The record is copied without PII keys, so the caller may reuse it afterwards.

        Args:
            record: One prediction, following the schema in the module docstring.
        """
        try:
            if self._closed:
                self._count_drop()
                return
            clean = _without_pii(record)
            inputs = clean.get("inputs")
            if isinstance(inputs, Mapping):
                clean["inputs"] = coarsened(_without_pii(inputs))
            if "ts" not in clean:
                clean["ts"] = datetime.now(UTC).isoformat()
            if len(self._pending) >= self._queue_size:
                self._count_drop()
                return
            self._pending.append(clean)
        except Exception:
            # A malformed record must not fail the prediction that produced it.
            logger.debug("prediction record rejected", exc_info=True)
            self._count_drop()

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until every record queued before this call is on disk.

        Args:
            timeout: Longest wait, in seconds.

        Returns:
            True when everything was written in time (records that failed to write count as
            handled), False on timeout or when the log is closed.
        """
        if self._closed or not self._thread.is_alive():
            return False
        deadline = time.monotonic() + timeout
        done = threading.Event()
        self._queue.put(done)
        return done.wait(max(deadline - time.monotonic(), 0.0))

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, stop the writer and close the file. Safe to call twice.

        Args:
            timeout: Longest wait, in seconds, for the queue to drain.
        """
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("prediction log writer did not finish within %.1f s", timeout)

    def _count_drop(self, n: int = 1) -> None:
        with self._count_lock:
            self.dropped += n

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=WRITE_INTERVAL_S)
            except queue.Empty:
                item = None
            stop = False
            flushes: list[threading.Event] = []
            while item is not None:
                if item is _STOP:
                    stop = True
                else:
                    flushes.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            # Drained after the control items: every record appended before a flush is in it.
            records = [self._pending.popleft() for _ in range(len(self._pending))]
            if records or flushes or stop:
                self._write(records, sync=bool(flushes) or stop)
            for event in flushes:
                event.set()
            if stop:
                self._close_file()
                return

    def _write(self, records: list[dict[str, Any]], *, sync: bool) -> None:
        for record in records:
            try:
                line = json.dumps(_jsonable(record), ensure_ascii=False, allow_nan=False) + "\n"
                size = len(line.encode("utf-8"))
                if (
                    self._file is None
                    or (self._file_size > 0 and self._file_size + size > self._rotate_bytes)
                    or time.monotonic() - self._opened_at >= self._rotate_seconds
                ):
                    self._open_next()
                    self._opened_at = time.monotonic()
                    self._hold_bound()
                assert self._file is not None
                self._file.write(line)
                self._file_size += size
                self.written += 1
                if self._failing:
                    logger.info("prediction log writes work again")
                    self._failing = False
            except Exception as error:
                self._count_drop()
                if not self._failing:
                    logger.error("prediction log cannot write to %s: %s", self.directory, error)
                    self._failing = True
                self._close_file()
        try:
            if self._file is not None:
                self._file.flush()
                if sync:
                    os.fsync(self._file.fileno())
        except OSError as error:
            logger.error("prediction log cannot flush %s: %s", self.directory, error)
            self._close_file()

    def _open_next(self) -> None:
        self._close_file()
        self.directory.mkdir(parents=True, exist_ok=True)
        while True:
            self._seq += 1
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            path = self.directory / f"predictions-{stamp}-{os.getpid()}-{self._seq:06d}.jsonl"
            try:
                # O_EXCL: a name already taken (e.g. a reused pid) is never appended to. Mode 0600:
                # the records are pseudonymous student data, readable by the service's user only.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                self._file = os.fdopen(fd, "w", encoding="utf-8")
            except FileExistsError:
                continue
            self._path = path
            self._file_size = 0
            logger.debug("prediction log now writes %s", path)
            return

    def _hold_bound(self) -> None:
        if self._max_bytes is None or self._path is None:
            return
        try:
            enforce_bound(self.directory, self._max_bytes, keep={self._path})
        except OSError as error:
            logger.error("prediction log cannot hold %s under its bound: %s", self.directory, error)

    def _close_file(self) -> None:
        if self._file is None:
            return
        try:
            self._file.close()
        except OSError as error:
            logger.error("prediction log cannot close its file: %s", error)
        self._file = None


def _file_order(path: Path) -> tuple[str, int, int]:
    match = FILE_PATTERN.match(path.name)
    assert match is not None
    return match.group(1), int(match.group(2)), int(match.group(3))


def log_files(directory: Path) -> list[Path]:
    """The prediction log files in ``directory``, oldest first (empty if it does not exist)."""
    if not directory.is_dir():
        return []
    files = [path for path in directory.iterdir() if path.is_file() and FILE_PATTERN.match(path.name)]
    return sorted(files, key=_file_order)


def read_records(directory: Path) -> Iterator[dict[str, Any]]:
    """Yield every record of every log file in ``directory``, oldest file first, in line order.

    A line that is not a JSON object (e.g. cut short by a crash) is skipped with a warning
    naming the file and line.

    Args:
        directory: The prediction log directory.

    Yields:
        One dict per record.
    """
    for path in log_files(directory):
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    logger.warning("skipping unreadable line %d of %s: %s", number, path, error)
                    continue
                if not isinstance(record, dict):
                    logger.warning("skipping line %d of %s: not a JSON object", number, path)
                    continue
                yield record
