"""How the service is run: uvicorn options and an HTTP protocol that bounds what a client can hold.

uvicorn (httptools) keeps reading a request's headers for as long as a client sends them, with
no limit on their size or count and no deadline: one connection could grow the process by
hundreds of megabytes, and half-sent requests stayed open indefinitely. :class:`GuardedHttpTools`
adds, per connection and before any route or key check runs:

* a bound on the bytes of the request line and headers (``PASSOS_MAX_HEADER_BYTES``) and on the
  number of header fields (``PASSOS_MAX_HEADERS``): over either, 431 and the connection closes;
* a deadline for the request line and headers (``PASSOS_HEADER_TIMEOUT_S``), from the moment the
  connection opens or the previous response ends: past it, 408 and the connection closes;
* a cap on open connections per worker (``PASSOS_MAX_CONNECTIONS``): past it, a new connection
  gets 503 and is closed before anything is read from it.

The body's deadline (``PASSOS_BODY_TIMEOUT_S``) is kept by the ASGI layer (``serving.guards.BodyLimit``),
which reads the body before the app sees it. Forwarded headers (``X-Forwarded-For``) are trusted
only from the proxies in ``PASSOS_FORWARDED_ALLOW_IPS``; uvicorn's own default trusts loopback.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from passos.settings import Settings

log = logging.getLogger(__name__)


_FULL_BODY = b'{"detail":"too many open connections","errors":[]}'
_FULL = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"retry-after: 1\r\ncontent-length: %d\r\n\r\n%s" % (len(_FULL_BODY), _FULL_BODY)
)


class _HeadRefused(Exception):
    """Raised inside the parser's callbacks to stop reading a request's head."""


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on header size, header count and header time."""

    max_header_bytes = 65_536
    max_headers = 100
    header_timeout_s = 5.0
    max_connections = 1000

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._in_head = True
        self._head_bytes = 0
        self._head_fields = 0
        self._refusal: tuple[int, bytes] | None = None
        self._head_timer: asyncio.TimerHandle | None = None

    # ---- the head's deadline ---------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_bytes == 0:
            self.transport.close()  # a connection that asked nothing
            return
        self._refuse(408, b"request headers not received in time")

    def _refuse(self, status: int, message: bytes) -> None:
        """Answer ``status`` with a JSON error and close the connection (no route has run)."""
        self._disarm_head_timer()
        phrase = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        body = b'{"detail":"%s","errors":[]}' % message
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        self.transport.write(head % (status, phrase, len(body)) + body)
        self.transport.close()
        log.warning(
            "refused a request from %s: %d %s", self.client[0] if self.client else "?", status, message.decode()
        )

    # ---- protocol events -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            # Refused before a byte is read: an idle connection holding big headers pins memory
            # (up to max_header_bytes each) that the process does not give back.
            transport.write(_FULL)
            transport.close()
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            self._arm_head_timer()
        super().data_received(data)  # our _HeadRefused reaches uvicorn as an HttpParserError: a 400 we skip
        if self._refusal is not None:
            self._refuse(*self._refusal)
        elif self._in_head and self._head_bytes > self.max_header_bytes and not self.transport.is_closing():
            self._refuse(431, b"request headers over %d bytes" % self.max_header_bytes)

    def send_400_response(self, msg: str) -> None:
        if self._refusal is not None:
            return  # our own refusal, raised through the parser: answered by data_received
        self._disarm_head_timer()
        super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_fields = 0
        self._arm_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_fields += 1
        if self._head_fields > self.max_headers:
            self._refusal = (431, b"more than %d header fields" % self.max_headers)
            raise _HeadRefused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The next bytes are the next request's head (also when pipelined); the keep-alive timer
        # closes an idle connection, the head timer bounds one that trickles.
        self._in_head = True
        self._head_bytes = 0


def guarded_protocol(settings: Settings) -> type[GuardedHttpTools]:
    """A :class:`GuardedHttpTools` subclass carrying these settings' limits."""
    return type(
        "GuardedHttpTools",
        (GuardedHttpTools,),
        {
            "max_header_bytes": settings.max_header_bytes,
            "max_headers": settings.max_headers,
            "header_timeout_s": settings.header_timeout_s,
            "max_connections": settings.max_connections,
        },
    )


class SettingsGuardedHttpTools(GuardedHttpTools):
    """:class:`GuardedHttpTools` with the limits of ``get_settings()``, importable by name.

    ``passos serve --workers N`` pickles uvicorn's config to each worker process, and the class
    :func:`guarded_protocol` builds cannot be pickled; this one is named instead
    (``serving.server:SettingsGuardedHttpTools``) and reads the same environment in every worker.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from passos.settings import get_settings

        settings = get_settings()
        self.max_header_bytes = settings.max_header_bytes
        self.max_headers = settings.max_headers
        self.header_timeout_s = settings.header_timeout_s
        self.max_connections = settings.max_connections
        super().__init__(*args, **kwargs)


def uvicorn_options(settings: Settings, *, by_name: bool = False) -> dict[str, Any]:
    """The hardening options of every uvicorn the project starts (``passos serve`` and the tests).

    ``by_name``: name the protocol class instead of building one (for worker processes; the
    settings must then be ``get_settings()``).
    """
    trusted = (settings.forwarded_allow_ips or "").strip()
    return {
        "http": "serving.server:SettingsGuardedHttpTools" if by_name else guarded_protocol(settings),
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or None,
        "timeout_keep_alive": settings.keep_alive_s,
        "limit_concurrency": settings.max_connections,  # uvicorn's own: 503 once as many requests run
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "server_header": False,
    }


def startup_warnings(settings: Settings) -> list[str]:
    """What an operator must hear at startup: an open API (a missing or weak id salt stops it instead)."""
    warnings = []
    if settings.api_key_value() is None:
        warnings.append(
            "PASSOS_API_KEY is empty: /predict, /predict/batch and /model are open to anyone who can reach "
            "this port. Set PASSOS_API_KEY (python3 -c 'import secrets; print(secrets.token_urlsafe(32))')."
        )
    return warnings
