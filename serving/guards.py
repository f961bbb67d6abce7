"""The ASGI guards of the service: a bound and a deadline on request bodies, a rate limit per client.

Both answer from the ASGI layer, before any route runs, in the routes' error shape. The guards
on the request head (header bytes, header count, header time, open connections) are kept one
layer lower, by the HTTP protocol uvicorn runs (``serving.server.GuardedHttpTools``).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request

from passos.settings import Settings
from serving.shared_state import SharedBuckets

RATE_LIMIT_SCOPE_KEY = "passos.rate_limit"


def key_matches(given: str, expected: str) -> bool:
    """Whether an API key sent equals the configured one (constant-time comparison)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, by header or while streaming, and bodies
    not received within ``timeout_s`` (from the end of the headers) with 408; both close the connection."""

    def __init__(self, app: Callable[..., Awaitable[None]], limit: int, timeout_s: float = 10.0) -> None:
        self.app = app
        self.limit = limit
        self.timeout_s = timeout_s

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._too_large(send)
                return
        # Read the body up to the limit before the app sees it, then replay it.
        chunks: list[bytes] = []
        received = 0
        more = True
        deadline = time.monotonic() + self.timeout_s
        while more:
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                await refuse(send, 408, b"request body not received within %g s" % self.timeout_s)
                return
            if message["type"] != "http.request":
                await self.app(scope, receive, send)
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.limit:
                await self._too_large(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return dict(await receive())

        await self.app(scope, replay, send)

    async def _too_large(self, send: Callable[..., Any]) -> None:
        await refuse(send, 413, b"request body over %d bytes" % self.limit)


async def refuse(send: Callable[..., Any], status_code: int, detail: bytes, *, close: bool = True) -> None:
    """An error answer from the ASGI layer, in the routes' shape; closes the connection when asked."""
    body = b'{"detail":"%s","errors":[]}' % detail
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the rest of the body is not read: the connection cannot carry another request
        headers.append((b"connection", b"close"))
    if status_code == 429:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RateLimit:
    """A token bucket per API key (per client address without one) on the prediction routes.

    With ``PASSOS_API_KEY`` set, the key is checked first: a request without the right key gets
    401 here and touches no bucket, so an unauthenticated flood cannot drain the key's bucket.
    The client address is the socket's peer, or the ``X-Forwarded-For`` of a proxy listed in
    ``PASSOS_FORWARDED_ALLOW_IPS`` (uvicorn resolves it), never a header from anyone else. At most
    ``max_clients`` buckets are kept; the least recently used is dropped in O(1).
    """

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        per_second: float,
        burst: int,
        *,
        api_key: str | None = None,
        max_clients: int = 10_000,
        shared: SharedBuckets | None = None,
    ) -> None:
        self.app = app
        self.per_second = per_second
        self.burst = float(burst)
        self.api_key = api_key
        self.max_clients = max_clients
        self.shared = shared  # every worker's buckets (passos serve); None: this process's own
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/predict"):
            await self.app(scope, receive, send)
            return
        if self.api_key is not None:
            given = next((v for k, v in scope.get("headers", []) if k == b"x-api-key"), b"")
            if not key_matches(given.decode("latin-1"), self.api_key):
                await refuse(send, 401, b"unauthorized", close=False)
                return
            client = "api-key"
        else:
            client = "ip:" + str((scope.get("client") or ("unknown", 0))[0])
        if not self.take(client, time.monotonic()):
            await refuse(send, 429, b"rate limit exceeded", close=False)
            return
        scope[RATE_LIMIT_SCOPE_KEY] = (self, client)  # a batch charges its other students (charge_students)
        await self.app(scope, receive, send)

    def take(self, client: str, now: float, cost: float = 1.0, *, admit: bool = True) -> bool:
        """Take ``cost`` tokens from ``client``'s bucket; False (nothing taken) when it holds less than one.

        ``admit=False`` takes them whatever the bucket holds (it may go below zero).
        """
        if self.shared is not None:  # it reads its own clock, under its lock
            if admit:
                return self.shared.take(client)
            self.shared.charge(client, cost)
            return True
        tokens, last = self.buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.per_second)
        allowed = not admit or tokens >= 1.0
        self.buckets[client] = (tokens - cost if allowed else tokens, now)  # now the most recently used
        if len(self.buckets) > self.max_clients:
            self.buckets.popitem(last=False)  # the least recently used: it would have refilled anyway
        return allowed


def charge_students(request: Request, students: int) -> None:
    """Charge a batch's students beyond the first to its client's bucket (the first paid to get in)."""
    admitted = request.scope.get(RATE_LIMIT_SCOPE_KEY)
    if admitted is not None and students > 1:
        limiter, client = admitted
        limiter.take(client, time.monotonic(), students - 1, admit=False)


def add_guards(app: FastAPI, settings: Settings) -> None:
    """Add the body limit and, when ``PASSOS_RATE_LIMIT_PER_S`` is over 0, the rate limit (which runs first)."""
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    if settings.rate_limit_per_s > 0:  # added last: runs first, before the body is read
        app.add_middleware(
            RateLimit,
            per_second=settings.rate_limit_per_s,
            burst=settings.rate_limit_burst,
            api_key=settings.api_key_value(),
            max_clients=settings.rate_limit_clients,
            shared=SharedBuckets(
                settings.home / "run" / "rate_limit.sqlite",
                per_second=settings.rate_limit_per_s,
                burst=settings.rate_limit_burst,
                max_clients=settings.rate_limit_clients,
            ),
        )
