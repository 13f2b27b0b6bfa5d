"""The engine on hostile upstream bodies, without servers (a fake fetcher at the seam)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest

from gateway.breaker import BreakerRegistry
from gateway.events import MemoryEmitter
from gateway.routing import build_routing_table
from gateway.selection import (
    AttemptRecord,
    RequestContext,
    RetryPolicy,
    SelectionEngine,
    summarize_attempts,
)
from gateway.upstream import CallProgress, UpstreamResponse
from schemas.config import GatewayConfig
from schemas.endpoints import ENDPOINTS_BY_KEY, EndpointKey
from schemas.events import AttemptOutcome, UpstreamAttemptEvent
from tests.unit.payload_samples import VALID_SAMPLES

CONFIG = GatewayConfig.model_validate(
    {
        "categories": [
            {
                "name": "anime",
                "endpoints": [
                    {
                        "path": "/api/v1/home",
                        "primary_apis": [
                            {"source_name": "a", "base_url": "http://a.test/v1", "priority": 1}
                        ],
                        "fallback_apis": {"a": ["http://b.test/v1"]},
                    }
                ],
            }
        ]
    }
)
VALID = orjson.dumps(VALID_SAMPLES[EndpointKey.HOME]())


def nested(depth: int) -> bytes:
    return b'{"confidence_score": 1, "x": ' + b"[" * depth + b"]" * depth + b"}"


class CannedFetcher:
    """Answers the primary (host a.test) with ``primary_body`` and everything else validly."""

    def __init__(self, primary_body: bytes) -> None:
        self._primary_body = primary_body

    async def get(
        self,
        url: str,
        headers: Sequence[tuple[str, str]],
        timeout_s: float,
        progress: CallProgress | None = None,
    ) -> UpstreamResponse:
        body = self._primary_body if "//a.test/" in url else VALID
        return UpstreamResponse(AttemptOutcome.OK, 200, body, len(body), 1.0)

    async def aclose(self) -> None:
        return None


async def select_with(primary_body: bytes) -> list[AttemptOutcome]:
    events = MemoryEmitter()
    engine = SelectionEngine(
        CannedFetcher(primary_body),
        BreakerRegistry(5, 300, lambda _: None),
        events,
        RetryPolicy(attempts=1, initial_wait_s=0, max_wait_s=0),
    )
    route = build_routing_table(CONFIG).resolve("anime", ENDPOINTS_BY_KEY[EndpointKey.HOME])
    result = await engine.select(route, "home", (), RequestContext("r", "t", "i"), 5.0)
    assert result.winner is not None and result.winner.body == VALID
    return [e.outcome for e in events.of_type(UpstreamAttemptEvent)]


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe{}", b"<html>Just a moment...</html>", nested(5000), b""],
    ids=["non-utf8", "html", "nested-5000-deep", "empty"],
)
async def test_unparseable_bodies_are_invalid_json_and_fall_back(body: bytes) -> None:
    assert await select_with(body) == [AttemptOutcome.INVALID_JSON, AttemptOutcome.OK]


async def test_json_that_is_not_an_object_is_invalid_schema() -> None:
    assert await select_with(b"[1, 2, 3]") == [AttemptOutcome.INVALID_SCHEMA, AttemptOutcome.OK]


def test_a_503_summary_counts_retries_and_tells_fallback_links_apart() -> None:
    def attempt(source: str, depth: int, outcome: AttemptOutcome) -> AttemptRecord:
        role = "fallback" if depth else "primary"
        return AttemptRecord(source, role, depth, f"http://{source}/{depth}", outcome, None, 1, "")

    tried = [
        attempt("drakorid", 0, AttemptOutcome.HTTP_5XX),
        attempt("drakorindo", 0, AttemptOutcome.HTTP_5XX),
        attempt("drakorid", 0, AttemptOutcome.HTTP_5XX),
        attempt("drakorid", 1, AttemptOutcome.TIMEOUT),
        attempt("drakorindo", 0, AttemptOutcome.HTTP_5XX),
    ]

    assert summarize_attempts(tried) == (
        "drakorid: http_5xx x2; drakorindo: http_5xx x2; drakorid (fallback 1): timeout"
    )
