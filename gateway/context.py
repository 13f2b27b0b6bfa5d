"""Per-request state carried from the edge hooks through the handler to the request event."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field

from gateway.ratelimit import RateDecision
from gateway.selection import RequestContext
from schemas.events import CacheStatus

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def request_id_from(header: str | None) -> str:
    """Keep a client's well-formed ``X-Request-Id`` so logs correlate across hops."""
    if header and _REQUEST_ID.match(header):
        return header
    return secrets.token_hex(16)


def trace_id_from(traceparent: str | None) -> str:
    """The W3C trace id of an incoming ``traceparent``, else a new one."""
    if traceparent:
        match = _TRACEPARENT.match(traceparent.strip())
        if match and match.group(1) != "0" * 32:
            return match.group(1)
    return secrets.token_hex(16)


@dataclass(slots=True)
class RequestState:
    request_id: str
    trace_id: str
    client_ip: str
    instance: str
    started: float = field(default_factory=time.perf_counter)
    rate: RateDecision | None = None
    category: str = ""
    cache_status: CacheStatus = CacheStatus.BYPASS
    source_name: str | None = None
    fallback_depth: int | None = None
    error_code: str | None = None

    @property
    def context(self) -> RequestContext:
        return RequestContext(self.request_id, self.trace_id, self.instance)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000
