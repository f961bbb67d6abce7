"""Prediction traces to Langfuse, off the request path.

One call of :meth:`Tracer.record` becomes one Langfuse trace: a single root observation
whose input is the feature values, whose output is the prediction, and whose metadata holds
``model_version``, ``task``, ``latency_ms``, ``request_id`` and ``error``. A failed prediction
is an observation of level ``ERROR`` with the error as its status message.

The request path only puts a tuple on a bounded queue. A daemon thread hands the records to
the Langfuse SDK (v5, OpenTelemetry based), whose own batch processor exports OTLP protobuf
to ``<base_url>/api/public/otel/v1/traces``. A slow or dead Langfuse host therefore costs the
caller nothing; when the queue is full, records are dropped and counted.

Isolation from other OpenTelemetry users: the SDK is given a private ``TracerProvider``
(so it never calls ``opentelemetry.trace.set_tracer_provider``) and an export filter that
keeps only spans of the Langfuse tracer. Spans of FastAPI or HTTP instrumentation therefore
never reach Langfuse, and Langfuse spans never reach another backend. The worker thread
starts with an empty OpenTelemetry context, so every trace is a root of its own even when
``record`` is called inside another library's active span.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langfuse import Langfuse
    from opentelemetry.sdk.trace import TracerProvider

    from passos.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 10_000
SEND_INTERVAL_S = 0.05
CHILD_START_S = 15.0
SERVICE_NAME = "passos-serving"


@dataclass(frozen=True, slots=True)
class _Record:
    name: str
    request_id: str
    inputs: dict[str, Any]
    output: dict[str, Any]
    model_version: str | None
    task: str
    latency_ms: float
    error: str | None = None
    student_hash: str | None = None


_STOP = object()


class Tracer:
    """Sends one Langfuse trace per prediction from a background thread.

    Build it with :meth:`from_settings` at service start and call :meth:`shutdown` at stop.
    It is enabled only when both keys are set and tracing is enabled; a disabled tracer
    starts no thread and its :meth:`record` returns at once.

    Attributes:
        dropped: Records lost because the queue was full, the tracer was shut down, or the
            SDK raised while building the trace.
        sent: Records handed to the SDK's exporter queue (delivery itself is the SDK's job;
            its failures are logged by the SDK, not counted here).
    """

    def __init__(
        self,
        *,
        public_key: str | None,
        secret_key: str | None,
        base_url: str,
        enabled: bool = True,
        timeout_s: float = 2.0,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        flush_interval_s: float | None = None,
    ) -> None:
        """Start the SDK client and the worker thread when tracing is enabled.

        Args:
            public_key: Langfuse public key; tracing is off without it.
            secret_key: Langfuse secret key; tracing is off without it.
            base_url: Langfuse host, e.g. ``https://cloud.langfuse.com``.
            enabled: ``LANGFUSE_TRACING_ENABLED``; False turns tracing off.
            timeout_s: Seconds the SDK waits for the host on each export.
            queue_size: Records held for the worker before new ones are dropped.
            flush_interval_s: Seconds between SDK batch exports (SDK default when None).
        """
        self.dropped = 0
        self.sent = 0
        self._count_lock = threading.Lock()
        self._closed = False
        self._enabled = bool(public_key) and bool(secret_key) and enabled
        self._client: Langfuse | None = None
        self._provider: TracerProvider | None = None
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        if not self._enabled:
            logger.info("Langfuse tracing is off (keys missing or LANGFUSE_TRACING_ENABLED=false)")
            return

        # Imported here: the SDK takes about half a second to import, a disabled tracer never needs it.
        from langfuse import Langfuse
        from langfuse.span_filter import is_langfuse_span
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        self._provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
        self._client = Langfuse(
            public_key=public_key,
            secret_key=secret_key,
            base_url=base_url.rstrip("/"),
            # The SDK annotates int seconds but hands the value to httpx and the OTLP
            # exporter, which both take float seconds; sub-second timeouts are useful.
            timeout=timeout_s,  # type: ignore[arg-type]
            tracing_enabled=True,
            tracer_provider=self._provider,
            should_export_span=is_langfuse_span,
            flush_interval=flush_interval_s,
        )
        if _sdk_provider(self._client) is not self._provider:
            # The SDK keeps one client per public key per process; an older one wins.
            logger.warning(
                "another Langfuse client with public key %s already exists in this process; "
                "its settings (host, tracer provider) are used",
                public_key,
            )
        self._thread = threading.Thread(target=self._run, name="passos-langfuse-tracer", daemon=True)
        self._thread.start()
        logger.info("Langfuse tracing on: %s (timeout %.1f s)", base_url, timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> Tracer:
        """Build the tracer from ``LANGFUSE_*`` settings.

        Args:
            settings: The project settings.

        Returns:
            A tracer, enabled only when both keys are set and tracing is enabled.
        """
        secret = settings.langfuse_secret_key
        return cls(
            public_key=settings.langfuse_public_key,
            secret_key=secret.get_secret_value() if secret is not None else None,
            base_url=settings.langfuse_base_url,
            enabled=settings.langfuse_tracing_enabled,
            timeout_s=settings.langfuse_timeout_s,
        )

    @property
    def enabled(self) -> bool:
        """Whether records are sent to Langfuse."""
        return self._enabled

    def record(
        self,
        *,
        name: str,
        request_id: str,
        inputs: dict[str, Any],
        output: dict[str, Any],
        model_version: str | None,
        task: str,
        latency_ms: float,
        error: str | None = None,
        student_hash: str | None = None,
    ) -> None:
        """Queue one prediction for tracing; never blocks and never raises.

        Args:
            name: Trace name, e.g. the endpoint (``"predict"``).
            request_id: The request's id, kept in metadata to join with the prediction log.
            inputs: Feature values sent to the model (no names or raw student ids).
            output: What the service answered, e.g. ``{"risk_score": 0.8, "risk_label": 1}``.
            model_version: Version of the model that answered, None when none did.
            task: Prediction task (``"current"`` or ``"next_year"``).
            latency_ms: Time the prediction took, in milliseconds.
            error: Error message of a failed prediction; the trace gets level ERROR.
            student_hash: Salted hash of the student id, used as the Langfuse user id.
        """
        if not self._enabled:
            return
        try:
            if self._closed:
                self._count_drop()
                return
            self._queue.put_nowait(
                _Record(
                    name,
                    request_id,
                    dict(inputs),
                    dict(output),
                    model_version,
                    task,
                    latency_ms,
                    error,
                    student_hash,
                )
            )
        except queue.Full:
            self._count_drop()
        except Exception:
            # Bad arguments from the caller must not fail a prediction.
            logger.debug("trace record rejected", exc_info=True)
            self._count_drop()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Send what is queued and stop, waiting at most about ``timeout`` seconds.

        Records still queued or unsent when the time is up are lost. Safe to call twice.

        Args:
            timeout: Upper bound, in seconds, on the time this call takes.
        """
        if not self._enabled or self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + max(timeout, 0.0)
        try:
            self._queue.put(_STOP, timeout=max(deadline - time.monotonic(), 0.001))
        except queue.Full:
            logger.warning("trace queue still full at shutdown; queued traces are lost")
        if self._thread is not None:
            self._thread.join(max(deadline - time.monotonic(), 0.0))

        # The SDK's flush waits for the host; run it aside so a dead host cannot hold us.
        closer = threading.Thread(target=self._close_sdk, name="passos-langfuse-shutdown", daemon=True)
        closer.start()
        closer.join(max(deadline - time.monotonic(), 0.0))
        if closer.is_alive():
            logger.warning(
                "Langfuse did not flush within %.1f s; unsent traces are lost (sent %d, dropped %d)",
                timeout,
                self.sent,
                self.dropped,
            )
        _forget_sdk_client(self._client)
        logger.info("Langfuse tracer stopped (sent %d, dropped %d)", self.sent, self.dropped)

    def _count_drop(self) -> None:
        with self._count_lock:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            self._deliver(item)

    def _deliver(self, rec: _Record) -> None:
        """Hand one record to the SDK, counting it as sent or dropped; never raises."""
        try:
            self._send(rec)
        except Exception:
            logger.warning("could not build the Langfuse trace", exc_info=True)
            self._count_drop()
        else:
            with self._count_lock:
                self.sent += 1

    def _send(self, rec: _Record) -> None:
        from langfuse import propagate_attributes

        assert self._client is not None  # only called when enabled
        metadata: dict[str, Any] = {
            "request_id": rec.request_id,
            "task": rec.task,
            "model_version": rec.model_version,
            "latency_ms": rec.latency_ms,
            "error": rec.error,
            "student_hash": rec.student_hash,
        }
        with propagate_attributes(
            trace_name=rec.name,
            user_id=rec.student_hash,
            version=rec.model_version,
            tags=[rec.task],
            metadata={"request_id": rec.request_id, "task": rec.task},
        ):
            observation = self._client.start_observation(
                name=rec.name,
                input=rec.inputs,
                output=rec.output,
                metadata=metadata,
                version=rec.model_version,
                level="ERROR" if rec.error else "DEFAULT",
                status_message=rec.error,
            )
        # Spans are built after the fact, so the span's duration is set to the latency.
        observation.end(end_time=time.time_ns() + int(rec.latency_ms * 1_000_000))

    def _close_sdk(self) -> None:
        try:
            if self._client is not None:
                self._client.shutdown()
            if self._provider is not None:
                self._provider.shutdown()
        except Exception:
            logger.warning("error while shutting Langfuse down", exc_info=True)


def _sdk_provider(client: Langfuse) -> Any:
    resources = getattr(client, "_resources", None)
    return getattr(resources, "tracer_provider", None)


def _forget_sdk_client(client: Langfuse | None) -> None:
    """Drop the SDK's per-public-key singleton so a later tracer starts afresh.

    The SDK caches one resource manager per public key for the life of the process and
    hands the cached one, with its host and tracer provider, to every later client. After a
    shutdown that cached manager is dead, so a service restarted in the same process (tests,
    lifespan reruns) would trace into nothing. This reaches into SDK internals; if they
    change, the tracer still works for the first client and only logs.
    """
    if client is None:
        return
    try:
        from langfuse._client.resource_manager import LangfuseResourceManager

        resources = getattr(client, "_resources", None)
        with LangfuseResourceManager._lock:
            instances = LangfuseResourceManager._instances
            for key, instance in list(instances.items()):
                if instance is resources:
                    del instances[key]
    except Exception:
        logger.debug("could not drop the Langfuse client cache", exc_info=True)


class ProcessTracer:
    """A :class:`Tracer` in a child process: the request path only hands a record to a pipe.

    The Langfuse SDK builds spans, encodes protobuf and exports in Python; in the serving
    process that work competes with requests for the GIL (throughput halved in
    ``benchmarks/api.py``). Here the child process owns the SDK and the other core does the
    work; the parent pays a deque append. A sender thread moves what is pending to the child
    every ``SEND_INTERVAL_S`` as one list (one pickle and one pipe write per batch), so the
    request path wakes no thread per record.
    Same interface as :class:`Tracer`: ``enabled``, ``record``, ``shutdown``, ``dropped``, ``sent``.
    """

    def __init__(self, config: dict[str, Any], *, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        import multiprocessing

        self.dropped = 0
        self._config = config
        self._enabled = (
            bool(config.get("public_key")) and bool(config.get("secret_key")) and config.get("enabled", True)
        )
        self._process: Any = None
        if not self._enabled:
            logger.info("Langfuse tracing is off (keys missing or LANGFUSE_TRACING_ENABLED=false)")
            return
        context = multiprocessing.get_context("spawn")
        self._queue: Any = context.Queue(maxsize=queue_size)
        self._sent: Any = context.Value("q", 0)
        self._ready: Any = context.Event()
        self._process = context.Process(
            target=_child_main,
            args=(config, self._queue, self._sent, self._ready),
            name="passos-langfuse",
            daemon=True,
        )
        self._process.start()
        self._queue_size = queue_size
        self._pending: collections.deque[_Record] = collections.deque()
        self._stop_sending = threading.Event()
        self._sender = threading.Thread(target=self._send_batches, name="passos-langfuse-sender", daemon=True)
        self._sender.start()
        logger.info("Langfuse tracing on in process %s: %s", self._process.pid, config.get("base_url"))

    def _send_batches(self) -> None:
        while True:
            stopping = self._stop_sending.wait(SEND_INTERVAL_S)
            batch = [self._pending.popleft() for _ in range(len(self._pending))]
            if batch:
                try:
                    self._queue.put(batch, timeout=1.0)
                except Exception:  # the child is gone or its pipe is full for a second: lose the batch
                    self.dropped += len(batch)
            if stopping:
                return

    @classmethod
    def from_settings(cls, settings: Settings) -> ProcessTracer:
        """Build it from the ``LANGFUSE_*`` settings (see :meth:`Tracer.from_settings`)."""
        secret = settings.langfuse_secret_key
        return cls(
            {
                "public_key": settings.langfuse_public_key,
                "secret_key": secret.get_secret_value() if secret is not None else None,
                "base_url": settings.langfuse_base_url,
                "enabled": settings.langfuse_tracing_enabled,
                "timeout_s": settings.langfuse_timeout_s,
            }
        )

    @property
    def enabled(self) -> bool:
        """Whether records are sent to Langfuse."""
        return bool(self._enabled)

    @property
    def sent(self) -> int:
        """Records the child handed to its SDK."""
        return int(self._sent.value) if self._enabled else 0

    def record(self, **fields: Any) -> None:
        """Queue one prediction (the arguments of :meth:`Tracer.record`); never blocks, never raises."""
        if not self._enabled:
            return
        try:
            record = _Record(**fields)
        except Exception:  # bad arguments: the prediction must not fail
            self.dropped += 1
            return
        if len(self._pending) >= self._queue_size:
            self.dropped += 1
            return
        self._pending.append(record)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Ask the child to flush and stop; kill it if it takes longer than about ``timeout``."""
        if self._process is None:
            return
        self._stop_sending.set()
        self._sender.join(2.0)
        try:
            self._queue.put(None, timeout=1.0)
        except Exception:
            logger.warning("could not signal the Langfuse process; stopping it")
        # A child still importing the SDK (seconds on a loaded machine) has not sent anything yet:
        # give it time to start before the flush timeout counts, or a short-lived service loses its traces.
        if not self._ready.wait(CHILD_START_S):
            logger.warning("the Langfuse process did not start within %.0f s", CHILD_START_S)
        self._process.join(timeout + 1.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(2.0)
        self._queue.close()
        self._queue.cancel_join_thread()
        self._process = None


def _child_main(config: dict[str, Any], records: Any, sent: Any, ready: Any) -> None:
    """The child process: one :class:`Tracer`, fed from the queue until ``None`` arrives."""
    tracer = Tracer(
        public_key=config.get("public_key"),
        secret_key=config.get("secret_key"),
        base_url=config["base_url"],
        enabled=config.get("enabled", True),
        timeout_s=config.get("timeout_s", 2.0),
    )
    ready.set()
    while True:
        batch = records.get()
        if batch is None:
            break
        for item in batch:
            tracer._deliver(item)
        sent.value = tracer.sent
    tracer.shutdown(timeout=config.get("timeout_s", 2.0) + 1.0)
