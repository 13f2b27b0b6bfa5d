"""Scale-out behaviour with a real Redis: shared cache, cross-instance fill lock, shared limits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.gateway import (
    FakeClock,
    Source,
    build_config,
    gateway_settings,
    running_gateway,
)
from tests.support.upstreams import DemoUpstreams

pytestmark = pytest.mark.redis
HOME = "/api/v1/home?category=anime"


async def test_an_answer_cached_by_one_instance_is_a_hit_on_another(
    upstreams: DemoUpstreams, tmp_path: Path, redis_url: str
) -> None:
    upstreams.set_knobs("alpha")
    config = build_config(upstreams, {"anime": [Source("alpha", 1)]})
    settings = gateway_settings(tmp_path, redis_url=redis_url)
    clock = FakeClock()
    async with (
        running_gateway(config, settings, clock) as first,
        running_gateway(config, settings, clock) as second,
    ):
        filled = await first.get(HOME)
        clock.advance(5)
        shared = await second.get(HOME)
        health = await second.get("/health")
    assert filled.headers["X-Cache"] == "MISS"
    assert shared.headers["X-Cache"] == "HIT"
    assert shared.headers["Age"] == "5"
    assert shared.body == filled.body
    assert upstreams.calls("alpha") == 1
    assert health.json()["checks"]["cache"]["backend"] == "redis"


async def test_stale_copy_in_redis_is_served_when_every_source_fails(
    upstreams: DemoUpstreams, tmp_path: Path, redis_url: str
) -> None:
    upstreams.set_knobs("alpha")
    config = build_config(upstreams, {"anime": [Source("alpha", 1)]}, ttl_seconds=60)
    settings = gateway_settings(tmp_path, redis_url=redis_url, retry_attempts=1)
    async with running_gateway(config, settings) as gw:
        await gw.get(HOME)
        upstreams.set_knobs("alpha", error_rate=1.0)
        gw.clock.advance(120)
        stale = await gw.get(HOME)
    assert stale.headers["X-Cache"] == "STALE"


async def test_concurrent_cold_requests_on_two_instances_cause_one_upstream_call(
    upstreams: DemoUpstreams, tmp_path: Path, redis_url: str
) -> None:
    upstreams.set_knobs("alpha", latency={"kind": "fixed", "median_ms": 300})
    config = build_config(upstreams, {"anime": [Source("alpha", 1)]})
    settings = gateway_settings(tmp_path, redis_url=redis_url)
    clock = FakeClock()
    async with (
        running_gateway(config, settings, clock) as first,
        running_gateway(config, settings, clock) as second,
    ):
        responses = await asyncio.gather(
            *(gw.get(HOME) for gw in (first, second) for _ in range(10))
        )
    assert {r.status for r in responses} == {200}
    assert upstreams.calls("alpha") == 1


async def test_rate_limit_holds_across_instances(
    upstreams: DemoUpstreams, tmp_path: Path, redis_url: str
) -> None:
    upstreams.set_knobs("alpha")
    config = build_config(upstreams, {"anime": [Source("alpha", 1)]})
    settings = gateway_settings(tmp_path, redis_url=redis_url, rate_limit="3/minute")
    async with (
        running_gateway(config, settings) as first,
        running_gateway(config, settings) as second,
    ):
        statuses = [(await gw.get(HOME)).status for gw in (first, second, first, second)]
    assert statuses == [200, 200, 200, 429]


async def test_unreachable_redis_degrades_but_keeps_serving(
    upstreams: DemoUpstreams, tmp_path: Path, redis_url: str
) -> None:
    upstreams.set_knobs("alpha")
    config = build_config(upstreams, {"anime": [Source("alpha", 1)]})
    # Port 9 (discard) on loopback: nothing listens, connections are refused at once.
    settings = gateway_settings(tmp_path, redis_url="redis://127.0.0.1:9/0")
    async with running_gateway(config, settings) as gw:
        answers = [await gw.get(HOME) for _ in range(2)]
        health = await gw.get("/health")
    assert [a.status for a in answers] == [200, 200]
    assert [a.headers["X-Cache"] for a in answers] == ["MISS", "MISS"]
    body = health.json()
    assert health.status == 200
    assert body["status"] == "degraded"
    assert body["checks"]["cache"]["status"] == "degraded"
    assert body["checks"]["rate_limit"]["errors_total"] >= 2
