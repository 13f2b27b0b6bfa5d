"""Selection and fallback semantics (SPEC §5) through real loopback upstream servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.events import AttemptOutcome, SourceRole
from tests.support.gateway import Source, build_config, gateway_settings, running_gateway
from tests.support.upstreams import DemoUpstreams

HOME = "/api/v1/home?category=anime"
Outcome = AttemptOutcome


async def test_best_priority_wins_even_when_a_lower_priority_answers_first(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha", latency={"kind": "fixed", "median_ms": 150})
    upstreams.set_knobs("beta")
    config = build_config(upstreams, {"anime": [Source("beta", 2), Source("alpha", 1)]})
    async with running_gateway(config, gateway_settings(tmp_path)) as gw:
        response = await gw.get(HOME)
    assert response.status == 200
    assert response.headers["X-Source"] == "alpha"
    assert response.headers["X-Fallback-Depth"] == "0"
    assert response.headers["X-Cache"] == "MISS"
    assert response.json()["source"] == "alpha"


async def test_lower_priority_call_still_in_flight_is_cancelled_and_recorded(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha")
    upstreams.set_knobs("beta", timeout_rate=1.0)
    config = build_config(upstreams, {"anime": [Source("alpha", 1), Source("beta", 2)]})
    async with running_gateway(config, gateway_settings(tmp_path)) as gw:
        response = await gw.get(HOME)
        assert response.headers["X-Source"] == "alpha"
        assert sorted(gw.outcomes()) == [("alpha", 0, Outcome.OK), ("beta", 0, Outcome.CANCELLED)]


@pytest.mark.parametrize(
    ("knobs", "outcome"),
    [
        ({"error_rate": 1.0}, Outcome.HTTP_5XX),
        ({"status_override": 404}, Outcome.HTTP_4XX),
        ({"timeout_rate": 1.0}, Outcome.TIMEOUT),
        ({"non_json_rate": 1.0}, Outcome.INVALID_JSON),
        ({"low_confidence_rate": 1.0}, Outcome.LOW_CONFIDENCE),
        ({"invalid_schema_rate": 1.0}, Outcome.INVALID_SCHEMA),
        ({"placeholder_rate": 1.0}, Outcome.INVALID_SCHEMA),
    ],
    ids=lambda value: value.value if isinstance(value, AttemptOutcome) else next(iter(value)),
)
async def test_each_failure_kind_moves_down_the_chain(
    upstreams: DemoUpstreams, tmp_path: Path, knobs: dict[str, object], outcome: AttemptOutcome
) -> None:
    upstreams.set_knobs("alpha", **knobs)
    upstreams.set_knobs("alpha-mirror")
    config = build_config(
        upstreams,
        {"anime": [Source("alpha", 1, fallbacks=["alpha-mirror"], timeout_seconds=0.5)]},
    )
    async with running_gateway(config, gateway_settings(tmp_path, retry_attempts=1)) as gw:
        response = await gw.get(HOME)
        assert response.status == 200
        assert response.headers["X-Source"] == "alpha"
        assert response.headers["X-Fallback-Depth"] == "1"
        assert response.json()["source"] == "alpha-mirror"
        assert gw.outcomes() == [("alpha", 0, outcome), ("alpha", 1, Outcome.OK)]
        roles = [a.role for a in gw.attempts()]
        assert roles == [SourceRole.PRIMARY, SourceRole.FALLBACK]


async def test_invalid_answers_emit_a_validation_failure_naming_field_and_rule(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha", placeholder_rate=1.0)
    upstreams.set_knobs("alpha-mirror")
    config = build_config(upstreams, {"anime": [Source("alpha", 1, fallbacks=["alpha-mirror"])]})
    async with running_gateway(config, gateway_settings(tmp_path)) as gw:
        await gw.get(HOME)
        (failure,) = gw.validation_failures()
    assert failure.source_name == "alpha"
    assert failure.failures
    assert all(f.path and f.rule for f in failure.failures)
    assert any(f.rule == "placeholder" for f in failure.failures)


async def test_a_chain_is_exhausted_before_the_next_primary_wins(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha", error_rate=1.0)
    upstreams.set_knobs("alpha-mirror", latency={"kind": "fixed", "median_ms": 100})
    upstreams.set_knobs("beta")
    config = build_config(
        upstreams,
        {"anime": [Source("alpha", 1, fallbacks=["alpha-mirror"]), Source("beta", 2)]},
    )
    async with running_gateway(config, gateway_settings(tmp_path, retry_attempts=1)) as gw:
        response = await gw.get(HOME)
    assert (response.headers["X-Source"], response.headers["X-Fallback-Depth"]) == ("alpha", "1")


async def test_next_primary_answers_when_the_better_chain_is_exhausted(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha", error_rate=1.0)
    upstreams.set_knobs("alpha-mirror", status_override=404)
    upstreams.set_knobs("beta")
    config = build_config(
        upstreams,
        {"anime": [Source("alpha", 1, fallbacks=["alpha-mirror"]), Source("beta", 2)]},
    )
    async with running_gateway(config, gateway_settings(tmp_path, retry_attempts=1)) as gw:
        response = await gw.get(HOME)
    assert (response.headers["X-Source"], response.headers["X-Fallback-Depth"]) == ("beta", "0")


async def test_5xx_is_retried_but_4xx_is_not(upstreams: DemoUpstreams, tmp_path: Path) -> None:
    upstreams.set_knobs("alpha", error_rate=1.0)
    upstreams.set_knobs("beta", status_override=404)
    upstreams.set_knobs("gamma")
    config = build_config(
        upstreams, {"anime": [Source("alpha", 1), Source("beta", 2), Source("gamma", 3)]}
    )
    async with running_gateway(config, gateway_settings(tmp_path, retry_attempts=3)) as gw:
        response = await gw.get(HOME)
        assert response.headers["X-Source"] == "gamma"
        retries = {(a.source_name, a.retry) for a in gw.attempts()}
    assert upstreams.calls("alpha") == 3
    assert upstreams.calls("beta") == 1
    assert {("alpha", 0), ("alpha", 1), ("alpha", 2), ("beta", 0)} <= retries


async def test_open_circuit_skips_the_link_without_calling_it(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha", error_rate=1.0)
    upstreams.set_knobs("alpha-mirror")
    config = build_config(upstreams, {"anime": [Source("alpha", 1, fallbacks=["alpha-mirror"])]})
    settings = gateway_settings(tmp_path, retry_attempts=1, breaker_failure_threshold=2)
    async with running_gateway(config, settings) as gw:
        for page in range(3):
            response = await gw.get(f"/api/v1/anime-terbaru?category=anime&page={page}")
            assert response.headers["X-Fallback-Depth"] == "1"
        primary = [a.outcome for a in gw.attempts() if a.depth == 0]
        health = await gw.get("/health")
    assert primary == [Outcome.HTTP_5XX, Outcome.HTTP_5XX, Outcome.CIRCUIT_OPEN]
    assert upstreams.calls("alpha") == 2, "the open circuit must not call the upstream"
    assert health.json()["status"] == "degraded"


async def test_request_deadline_bounds_the_whole_selection(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha", timeout_rate=1.0)
    upstreams.set_knobs("alpha-mirror", timeout_rate=1.0)
    config = build_config(upstreams, {"anime": [Source("alpha", 1, fallbacks=["alpha-mirror"])]})
    settings = gateway_settings(tmp_path, request_deadline_seconds=0.4)
    async with running_gateway(config, settings) as gw:
        response = await gw.get(HOME)
        assert response.status == 503
        outcomes = [a.outcome for a in gw.attempts()]
    assert outcomes[0] is Outcome.DEADLINE_EXCEEDED
    assert upstreams.calls("alpha-mirror") == 0, "no time was left to try the fallback"


async def test_oversized_upstream_body_is_an_invalid_attempt_not_a_crash(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha")
    config = build_config(upstreams, {"anime": [Source("alpha", 1)]})
    settings = gateway_settings(tmp_path, max_upstream_body_bytes=1024)
    async with running_gateway(config, settings) as gw:
        response = await gw.get(HOME)
        assert response.status == 503
        assert gw.outcomes() == [("alpha", 0, Outcome.BODY_TOO_LARGE)]
    attempt = response.json()["attempts"][0]
    assert attempt["outcome"] == "body_too_large"
