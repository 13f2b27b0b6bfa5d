"""Caching through the gateway: only valid answers, stale as a last resort, one fill per key."""

from __future__ import annotations

import asyncio
from pathlib import Path

from schemas.events import AttemptOutcome
from tests.support.gateway import Source, build_config, gateway_settings, running_gateway
from tests.support.upstreams import DemoUpstreams

HOME = "/api/v1/home?category=anime"


async def test_second_request_is_a_hit_with_age_and_no_upstream_call(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha")
    config = build_config(upstreams, {"anime": [Source("alpha", 1)]}, ttl_seconds=60)
    async with running_gateway(config, gateway_settings(tmp_path)) as gw:
        first = await gw.get(HOME)
        gw.clock.advance(12)
        second = await gw.get(HOME)
    assert first.headers["X-Cache"] == "MISS"
    assert "Age" not in first.headers
    assert second.headers["X-Cache"] == "HIT"
    assert second.headers["Age"] == "12"
    assert second.body == first.body
    assert upstreams.calls("alpha") == 1


async def test_stale_copy_is_served_when_every_chain_fails_after_the_ttl(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha")
    config = build_config(
        upstreams, {"anime": [Source("alpha", 1)]}, ttl_seconds=60, stale_ttl_seconds=600
    )
    async with running_gateway(config, gateway_settings(tmp_path, retry_attempts=1)) as gw:
        fresh = await gw.get(HOME)
        upstreams.set_knobs("alpha", error_rate=1.0)
        gw.clock.advance(61)
        stale = await gw.get(HOME)
        gw.clock.advance(600)
        gone = await gw.get(HOME)
    assert stale.status == 200
    assert stale.headers["X-Cache"] == "STALE"
    assert stale.headers["Age"] == "61"
    assert stale.body == fresh.body
    assert gone.status == 503, "past the stale window the copy is not served"


async def test_after_the_ttl_a_working_source_refreshes_instead_of_serving_stale(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha")
    config = build_config(upstreams, {"anime": [Source("alpha", 1)]}, ttl_seconds=60)
    async with running_gateway(config, gateway_settings(tmp_path)) as gw:
        await gw.get(HOME)
        gw.clock.advance(61)
        refreshed = await gw.get(HOME)
    assert refreshed.headers["X-Cache"] == "MISS"
    assert upstreams.calls("alpha") == 2


async def test_invalid_answers_are_never_cached(upstreams: DemoUpstreams, tmp_path: Path) -> None:
    upstreams.set_knobs("alpha", invalid_schema_rate=1.0)
    config = build_config(upstreams, {"anime": [Source("alpha", 1)]})
    async with running_gateway(config, gateway_settings(tmp_path)) as gw:
        first = await gw.get(HOME)
        second = await gw.get(HOME)
        upstreams.set_knobs("alpha", invalid_schema_rate=0.0)
        third = await gw.get(HOME)
    assert (first.status, second.status) == (503, 503)
    assert third.status == 200
    assert third.headers["X-Cache"] == "MISS"
    assert upstreams.calls("alpha") == 3, "every request went upstream: nothing invalid was kept"


async def test_twenty_concurrent_cold_requests_cause_one_call_per_source(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    # The upstream answers after 300 ms, far longer than 20 in-process requests take to arrive.
    slow = {"latency": {"kind": "fixed", "median_ms": 300}}
    upstreams.set_knobs("alpha", **slow)
    upstreams.set_knobs("beta", **slow)
    config = build_config(upstreams, {"anime": [Source("alpha", 1), Source("beta", 2)]})
    async with running_gateway(config, gateway_settings(tmp_path)) as gw:
        responses = await asyncio.gather(*(gw.get(HOME) for _ in range(20)))
        request_events = gw.requests()
    assert {r.status for r in responses} == {200}
    assert len({r.body for r in responses}) == 1
    assert (upstreams.calls("alpha"), upstreams.calls("beta")) == (1, 1)
    assert len(request_events) == 20


async def test_hot_key_is_refreshed_in_the_background_before_it_expires(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha")
    config = build_config(upstreams, {"anime": [Source("alpha", 1)]}, ttl_seconds=100)
    settings = gateway_settings(tmp_path, refresh_ahead_fraction=0.2)
    async with running_gateway(config, settings) as gw:
        await gw.get(HOME)
        gw.clock.advance(85)  # inside the last 20 % of the TTL
        hit = await gw.get(HOME)
        await gw.container.service.drain()
        gw.clock.advance(30)  # past the first entry's TTL, inside the refreshed one's
        later = await gw.get(HOME)
    assert hit.headers["X-Cache"] == "HIT"
    assert later.headers["X-Cache"] == "HIT"
    assert later.headers["Age"] == "30"
    assert upstreams.calls("alpha") == 2


async def test_refresh_ahead_failure_keeps_serving_the_cached_copy(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha")
    config = build_config(upstreams, {"anime": [Source("alpha", 1)]}, ttl_seconds=100)
    settings = gateway_settings(tmp_path, refresh_ahead_fraction=0.2, retry_attempts=1)
    async with running_gateway(config, settings) as gw:
        first = await gw.get(HOME)
        upstreams.set_knobs("alpha", error_rate=1.0)
        gw.clock.advance(90)
        await gw.get(HOME)
        await gw.container.service.drain()
        hit = await gw.get(HOME)
        outcomes = [a.outcome for a in gw.attempts()]
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.body == first.body
    assert AttemptOutcome.HTTP_5XX in outcomes
