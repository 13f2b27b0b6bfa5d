"""The engine and upstream client on hostile bodies, without servers (httpx.MockTransport)."""

from __future__ import annotations

import httpx
import orjson
import pytest

from gateway.breaker import BreakerRegistry
from gateway.events import MemoryEmitter
from gateway.routing import build_routing_table
from gateway.selection import RequestContext, RetryPolicy, SelectionEngine
from gateway.upstream import HttpxUpstreamClient
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


async def select_with(primary_body: bytes, *, cap: int = 1 << 20) -> list[AttemptOutcome]:
    def respond(request: httpx.Request) -> httpx.Response:
        body = primary_body if request.url.host == "a.test" else VALID
        return httpx.Response(200, content=body)

    client = HttpxUpstreamClient(
        max_body_bytes=cap,
        max_connections=4,
        user_agent="test",
        transport=httpx.MockTransport(respond),
    )
    events = MemoryEmitter()
    engine = SelectionEngine(
        client,
        BreakerRegistry(5, 300, lambda _: None),
        events,
        RetryPolicy(attempts=1, initial_wait_s=0, max_wait_s=0),
    )
    route = build_routing_table(CONFIG).resolve("anime", ENDPOINTS_BY_KEY[EndpointKey.HOME])
    try:
        result = await engine.select(route, "home", (), RequestContext("r", "t", "i"), 5.0)
    finally:
        await client.aclose()
    assert result.winner is not None and result.winner.body == VALID
    return [e.outcome for e in events.of_type(UpstreamAttemptEvent)]


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe{}", b"<html>Just a moment...</html>", nested(5000), b""],
    ids=["non-utf8", "html", "nested-5000-deep", "empty"],
)
async def test_unparseable_bodies_are_invalid_json_and_fall_back(body: bytes) -> None:
    assert await select_with(body) == [AttemptOutcome.INVALID_JSON, AttemptOutcome.OK]


async def test_body_over_the_cap_is_abandoned_and_falls_back() -> None:
    outcomes = await select_with(VALID + b" " * 4096, cap=len(VALID) + 100)
    assert outcomes == [AttemptOutcome.BODY_TOO_LARGE, AttemptOutcome.OK]


async def test_json_that_is_not_an_object_is_invalid_schema() -> None:
    assert await select_with(b"[1, 2, 3]") == [AttemptOutcome.INVALID_SCHEMA, AttemptOutcome.OK]
