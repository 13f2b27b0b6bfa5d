"""One HTTP GET to an upstream, classified into an outcome; never raises for upstream faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from schemas.events import AttemptOutcome


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """What came back from one call; ``body`` is set only for a complete 2xx answer."""

    outcome: AttemptOutcome
    status_code: int | None
    body: bytes | None
    bytes_read: int
    latency_ms: float
    detail: str = ""

    @property
    def retriable(self) -> bool:
        """5xx and transport failures may be retried; 4xx and bad payloads never are."""
        return self.outcome in _RETRIABLE


_RETRIABLE = frozenset({AttemptOutcome.HTTP_5XX, AttemptOutcome.CONNECTION_ERROR})


class CallProgress:
    """Set by the fetcher once the request is on the wire.

    A call cancelled before that never reached the upstream, so it is not an attempt.
    """

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = False


class UpstreamFetcher(Protocol):
    async def get(
        self,
        url: str,
        headers: Sequence[tuple[str, str]],
        timeout_s: float,
        progress: CallProgress | None = None,
    ) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


def classify_status(status_code: int) -> AttemptOutcome:
    if 200 <= status_code < 300:
        return AttemptOutcome.OK
    if 500 <= status_code < 600:
        return AttemptOutcome.HTTP_5XX
    if 400 <= status_code < 500:
        return AttemptOutcome.HTTP_4XX
    return AttemptOutcome.HTTP_OTHER


# The CallProgress of the call the current task is making; read where aiohttp sends it.
_CURRENT_CALL: ContextVar[CallProgress | None] = ContextVar("upstream_call", default=None)


class _ProgressMarkingRequest(aiohttp.ClientRequest):
    """Marks the current call as sent once aiohttp has written its request.

    ``send`` runs in the caller's task and, for a GET, has no suspension point once the
    connection is open: when it returns the request is written, and a cancellation before that
    means it never was. An aiohttp ``TraceConfig`` tells the same, but traces every stage of
    every call (~90 µs of CPU per call here).
    """

    async def send(self, *args: Any, **kwargs: Any) -> aiohttp.ClientResponse:
        response = await super().send(*args, **kwargs)
        progress = _CURRENT_CALL.get()
        if progress is not None:
            progress.sent = True
        return response


class AiohttpUpstreamClient:
    """Pooled aiohttp session with a whole-call timeout and a body size cap.

    aiohttp rather than httpx: on this 2-core target httpx spent 1.9 ms of CPU per upstream
    call against aiohttp's 0.26 ms (``make bench`` history in docs/BENCHMARKS.md), and that
    difference was most of the gateway's added latency on a cache miss.

    The timeout covers connect, headers and the full body (a slow-dripping upstream cannot
    hold a call forever). Bodies over ``max_body_bytes`` are abandoned while streaming, and
    compressed bodies are counted after decompression, so a huge or zip-bomb answer never
    spikes memory. Cookies are not kept: upstream calls are independent. Bind one instance
    to one event loop; the session is created lazily inside it.
    """

    def __init__(self, *, max_body_bytes: int, max_connections: int, user_agent: str) -> None:
        self._max_body_bytes = max_body_bytes
        self._max_connections = max_connections
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                request_class=_ProgressMarkingRequest,
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections, ttl_dns_cache=300, enable_cleanup_closed=True
                ),
                headers={"User-Agent": self._user_agent, "Accept": "application/json"},
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
        return self._session

    async def get(
        self,
        url: str,
        headers: Sequence[tuple[str, str]],
        timeout_s: float,
        progress: CallProgress | None = None,
    ) -> UpstreamResponse:
        """Fetch ``url``; every failure becomes an outcome, cancellation propagates."""
        # Each chain runs in its own task, whose context holds the variable: one call at a time.
        token = _CURRENT_CALL.set(progress)
        try:
            return await self._get(url, headers, timeout_s)
        finally:
            _CURRENT_CALL.reset(token)

    async def _get(
        self, url: str, headers: Sequence[tuple[str, str]], timeout_s: float
    ) -> UpstreamResponse:
        started = time.perf_counter()
        status: int | None = None
        read = 0

        def done(
            outcome: AttemptOutcome, body: bytes | None = None, detail: str = ""
        ) -> UpstreamResponse:
            latency = (time.perf_counter() - started) * 1000
            return UpstreamResponse(outcome, status, body, read, latency, detail)

        cap = self._max_body_bytes
        try:
            async with (
                asyncio.timeout(timeout_s),
                self._client().get(
                    url,
                    headers=list(headers) or None,
                    allow_redirects=True,
                    max_redirects=3,
                ) as response,
            ):
                status = response.status
                outcome = classify_status(status)
                if outcome is not AttemptOutcome.OK:
                    return done(outcome, detail=f"HTTP {status}")
                declared = response.content_length
                if declared is not None and declared > cap:
                    return done(
                        AttemptOutcome.BODY_TOO_LARGE,
                        detail=f"declared {declared} bytes > cap {cap}",
                    )
                if declared is not None and not response.headers.get("Content-Encoding"):
                    body = await response.read()  # fast path: exact, already bounded
                    read = len(body)
                    return done(AttemptOutcome.OK, body)
                chunks: list[bytes] = []
                async for chunk in response.content.iter_any():
                    read += len(chunk)
                    if read > cap:
                        return done(
                            AttemptOutcome.BODY_TOO_LARGE, detail=f"body over cap of {cap} bytes"
                        )
                    chunks.append(chunk)
                return done(AttemptOutcome.OK, b"".join(chunks))
        except TimeoutError:
            return done(AttemptOutcome.TIMEOUT, detail=f"no complete answer within {timeout_s:g}s")
        except aiohttp.ClientConnectionError as exc:
            return done(AttemptOutcome.CONNECTION_ERROR, detail=type(exc).__name__)
        except aiohttp.ClientError as exc:  # too many redirects, bad payload encoding, ...
            return done(AttemptOutcome.HTTP_OTHER, detail=f"{type(exc).__name__}: {exc}"[:200])

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
