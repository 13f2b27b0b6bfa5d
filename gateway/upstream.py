"""One HTTP GET to an upstream, classified into an outcome; never raises for upstream faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx

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


class UpstreamFetcher(Protocol):
    async def get(
        self, url: str, headers: Sequence[tuple[str, str]], timeout_s: float
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


class HttpxUpstreamClient:
    """Shared httpx client with connection pooling, a whole-call timeout and a body size cap.

    The timeout covers connect, headers and the full body (httpx's own timeouts are per
    operation, so a slow-dripping upstream could otherwise hold a call forever). Bodies are
    streamed and abandoned past ``max_body_bytes`` so a huge answer never spikes memory.
    Bind one instance to one event loop.
    """

    def __init__(
        self,
        *,
        max_body_bytes: int,
        max_connections: int,
        user_agent: str,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._max_body_bytes = max_body_bytes
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=None,
            follow_redirects=True,
            max_redirects=3,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            trust_env=False,
        )

    async def get(
        self, url: str, headers: Sequence[tuple[str, str]], timeout_s: float
    ) -> UpstreamResponse:
        """Fetch ``url``; every failure becomes an outcome, cancellation propagates."""
        started = time.perf_counter()
        status: int | None = None
        read = 0

        def done(
            outcome: AttemptOutcome, body: bytes | None = None, detail: str = ""
        ) -> UpstreamResponse:
            latency = (time.perf_counter() - started) * 1000
            return UpstreamResponse(outcome, status, body, read, latency, detail)

        try:
            async with (
                asyncio.timeout(timeout_s),
                self._client.stream("GET", url, headers=list(headers)) as response,
            ):
                status = response.status_code
                outcome = classify_status(status)
                if outcome is not AttemptOutcome.OK:
                    return done(outcome, detail=f"HTTP {status}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self._max_body_bytes:
                    return done(
                        AttemptOutcome.BODY_TOO_LARGE,
                        detail=f"declared {declared} bytes > cap {self._max_body_bytes}",
                    )
                chunks: list[bytes] = []
                async for chunk in response.aiter_bytes():
                    read += len(chunk)
                    if read > self._max_body_bytes:
                        return done(
                            AttemptOutcome.BODY_TOO_LARGE,
                            detail=f"body over cap of {self._max_body_bytes} bytes",
                        )
                    chunks.append(chunk)
                return done(AttemptOutcome.OK, b"".join(chunks))
        except TimeoutError:
            return done(AttemptOutcome.TIMEOUT, detail=f"no complete answer within {timeout_s:g}s")
        except httpx.TransportError as exc:
            return done(AttemptOutcome.CONNECTION_ERROR, detail=type(exc).__name__)
        except httpx.HTTPError as exc:  # e.g. too many redirects, decoding errors
            return done(AttemptOutcome.HTTP_OTHER, detail=f"{type(exc).__name__}: {exc}"[:200])

    async def aclose(self) -> None:
        await self._client.aclose()
