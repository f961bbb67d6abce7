"""A tiny OTLP/HTTP trace receiver on loopback that stands in for a Langfuse server in tests.

It accepts ``POST /api/public/otel/v1/traces`` (the path the Langfuse SDK exports to), decodes
the protobuf body (gzip or not) into plain dicts and remembers the ``Authorization`` header.

Modes:
    ``"ok"``: answer 200 with an empty ``ExportTraceServiceResponse``.
    ``"error"``: answer 500 after reading the body (the spans are still decoded and kept).
    ``"slow"``: read the body and never answer while the receiver is open; closing the
    receiver releases the waiting handlers, so it shuts down in well under a second.

Example:
    >>> with OtlpReceiver() as receiver:
    ...     tracer = Tracer(public_key="pk", secret_key="sk", base_url=receiver.base_url)
    ...     ...
    ...     receiver.wait_for_spans(1, timeout=5)
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

TRACES_PATH = "/api/public/otel/v1/traces"
Mode = Literal["ok", "error", "slow"]


def any_value_to_python(value: AnyValue) -> Any:
    """Turn an OTLP ``AnyValue`` into the matching Python value."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value_to_python(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value_to_python(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def decode_spans(body: bytes) -> list[dict[str, Any]]:
    """Decode an ``ExportTraceServiceRequest`` body into one dict per span.

    Each dict has ``name``, ``trace_id`` and ``span_id`` and ``parent_span_id`` (hex, the
    latter empty for a root), ``scope`` (instrumentation scope name), ``attributes``
    (Python values), ``resource`` (resource attributes) and ``status`` (``code`` as an int,
    ``message``).
    """
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[dict[str, Any]] = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: any_value_to_python(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    {
                        "name": span.name,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "scope": scope_spans.scope.name,
                        "attributes": {kv.key: any_value_to_python(kv.value) for kv in span.attributes},
                        "resource": resource,
                        "status": {"code": int(span.status.code), "message": span.status.message},
                    }
                )
    return spans


class OtlpReceiver:
    """An OTLP/HTTP receiver running in a background thread on ``127.0.0.1``.

    Attributes:
        mode: How requests are answered (see the module docstring).
        spans: Decoded spans, in arrival order.
        bodies: Raw request bodies after decompression, in arrival order.
        auth_headers: The ``Authorization`` header of every request.
        requests: Number of POST requests received on the traces path.
    """

    def __init__(self, mode: Mode = "ok", *, slow_s: float = 60.0) -> None:
        self.mode: Mode = mode
        self.spans: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []
        self.auth_headers: list[str | None] = []
        self.requests = 0
        self._slow_s = slow_s
        self._lock = threading.Condition()
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``, the value for ``LANGFUSE_BASE_URL``."""
        if self._server is None:
            raise RuntimeError("the receiver is not running")
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> OtlpReceiver:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Bind a free port and serve in a daemon thread."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

            def do_POST(self) -> None:
                receiver._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="otlp-receiver", kwargs={"poll_interval": 0.05}
        )
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        """Release slow handlers, stop serving and close the socket."""
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wait_for_spans(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Block until at least ``n`` spans arrived or ``timeout`` passed; return the spans so far."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.spans) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._lock.wait(remaining)
            return list(self.spans)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        if handler.path != TRACES_PATH:
            handler.send_error(404)
            return
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        encoding = (handler.headers.get("Content-Encoding") or "").lower()
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)

        if self.mode == "slow":
            with self._lock:
                self.requests += 1
                self.auth_headers.append(handler.headers.get("Authorization"))
                self._lock.notify_all()
            self._closing.wait(self._slow_s)
            handler.close_connection = True
            return

        spans = decode_spans(body)
        with self._lock:
            self.requests += 1
            self.bodies.append(body)
            self.auth_headers.append(handler.headers.get("Authorization"))
            self.spans.extend(spans)
            self._lock.notify_all()

        if self.mode == "error":
            payload = b"internal error"
            handler.send_response(500)
            handler.send_header("Content-Type", "text/plain")
        else:
            payload = ExportTraceServiceResponse().SerializeToString()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/x-protobuf")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
