"""Health-aware routing: Down links go last, a healthy probe closes an open circuit."""

from __future__ import annotations

import time
from collections.abc import Sequence

import orjson

from gateway.breaker import BreakerRegistry
from gateway.events import MemoryEmitter
from gateway.health_view import HealthView
from gateway.routing import build_routing_table
from gateway.selection import RequestContext, RetryPolicy, SelectionEngine
from gateway.upstream import CallProgress, UpstreamResponse
from schemas.config import GatewayConfig
from schemas.endpoints import ENDPOINTS_BY_KEY, EndpointKey
from schemas.events import AttemptOutcome
from tests.unit.payload_samples import VALID_SAMPLES

VALID = orjson.dumps(VALID_SAMPLES[EndpointKey.HOME]())
PRIMARY, MIRROR = "http://primary.test/v1", "http://mirror.test/v1"
CONFIG = GatewayConfig.model_validate(
    {
        "categories": [
            {
                "name": "anime",
                "endpoints": [
                    {
                        "path": "/api/v1/home",
                        "primary_apis": [{"source_name": "s", "base_url": PRIMARY, "priority": 1}],
                        "fallback_apis": {"s": [MIRROR]},
                    }
                ],
            }
        ]
    }
)


class RecordingFetcher:
    def __init__(self, failing: set[str]) -> None:
        self.failing = failing
        self.called: list[str] = []

    async def get(
        self,
        url: str,
        headers: Sequence[tuple[str, str]],
        timeout_s: float,
        progress: CallProgress | None = None,
    ) -> UpstreamResponse:
        base = url.rsplit("/", 1)[0]
        self.called.append(base)
        if base in self.failing:
            return UpstreamResponse(AttemptOutcome.HTTP_5XX, 503, None, 0, 1.0, "HTTP 503")
        return UpstreamResponse(AttemptOutcome.OK, 200, VALID, len(VALID), 1.0)

    async def aclose(self) -> None:
        return None


async def run(fetcher: RecordingFetcher, health: HealthView, breakers: BreakerRegistry) -> str:
    engine = SelectionEngine(
        fetcher, breakers, MemoryEmitter(), RetryPolicy(1, 0, 0), health=health
    )
    route = build_routing_table(CONFIG).resolve("anime", ENDPOINTS_BY_KEY[EndpointKey.HOME])
    result = await engine.select(route, "home", (), RequestContext("r", "t", "i"), 5.0)
    assert result.winner is not None
    return result.winner.link.base_url


def registry() -> BreakerRegistry:
    return BreakerRegistry(threshold=1, open_seconds=300, on_transition=lambda _: None)


async def test_a_down_primary_is_tried_after_its_healthy_fallback() -> None:
    breakers = registry()
    health = HealthView(breakers.record_success)
    health.mark(PRIMARY, up=False)
    fetcher = RecordingFetcher(failing=set())
    assert await run(fetcher, health, breakers) == MIRROR
    assert fetcher.called == [MIRROR]


async def test_a_down_link_is_still_tried_when_the_healthy_ones_fail() -> None:
    breakers = registry()
    health = HealthView(breakers.record_success)
    health.mark(PRIMARY, up=False)
    fetcher = RecordingFetcher(failing={MIRROR})
    assert await run(fetcher, health, breakers) == PRIMARY
    assert fetcher.called == [MIRROR, PRIMARY]


async def test_a_healthy_probe_closes_the_open_circuit_at_once() -> None:
    breakers = registry()
    health = HealthView(breakers.record_success)
    breakers.record_failure(PRIMARY, now=time.monotonic())  # threshold 1: open for 300 s
    fetcher = RecordingFetcher(failing=set())
    assert await run(fetcher, health, breakers) == MIRROR, "open circuit: primary skipped"
    health.mark(PRIMARY, up=True)
    assert await run(fetcher, health, breakers) == PRIMARY, "probe said Up: primary is back"
