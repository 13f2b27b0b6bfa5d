"""The demo's fake sources with their default knobs, and the gateway config that routes to them."""

from __future__ import annotations

from demo.knobs import Knobs
from schemas.config import CategoryConfig, EndpointConfig, GatewayConfig, PrimaryApi
from schemas.endpoints import ENDPOINTS

# Short enough that a hung primary visibly falls back within a demo click.
DEMO_TIMEOUT_SECONDS = 3.0
# Short so a demo user sees refills and stale answers within a minute; real configs default to
# each endpoint's TTL (home 900 s, anime-detail 3600 s, ...).
DEMO_TTL_SECONDS = 30


def _flaky(median_ms: float, p99_ms: float, seed: int, error_rate: float, **rates: float) -> Knobs:
    """A source with lognormal latency and small fault rates; most requests still succeed."""
    fields: dict[str, object] = {
        "latency": {"kind": "lognormal", "median_ms": median_ms, "p99_ms": p99_ms},
        "error_rate": error_rate,
        "timeout_rate": 0.01,
        "invalid_schema_rate": 0.02,
        "low_confidence_rate": 0.02,
        "placeholder_rate": 0.01,
        "non_json_rate": 0.01,
        "seed": seed,
    }
    return Knobs.model_validate(fields | rates)


DEFAULT_SOURCES: dict[str, Knobs] = {
    "samehadaku": _flaky(35, 180, 101, 0.05, invalid_schema_rate=0.03),
    "samehadaku-mirror": _flaky(60, 300, 102, 0.02, timeout_rate=0.005),
    "samehadaku-mirror2": _flaky(90, 450, 103, 0.01, timeout_rate=0.005),
    "otakudesu": _flaky(45, 250, 201, 0.05, low_confidence_rate=0.04),
    "otakudesu-mirror": _flaky(70, 350, 202, 0.02, timeout_rate=0.005),
    "kuramanime": _flaky(80, 500, 301, 0.03),
    "drakorid": _flaky(40, 220, 401, 0.04, placeholder_rate=0.03),
    "drakorid-mirror": _flaky(75, 400, 402, 0.02, timeout_rate=0.005),
    "drakorindo": _flaky(55, 300, 501, 0.03),
}

# category → (primary, priority, its fallbacks in order); lower priority numbers rank first.
DEMO_CHAINS: dict[str, tuple[tuple[str, int, tuple[str, ...]], ...]] = {
    "anime": (
        ("samehadaku", 1, ("samehadaku-mirror", "samehadaku-mirror2")),
        ("otakudesu", 2, ("otakudesu-mirror",)),
        ("kuramanime", 3, ()),
    ),
    "drakor": (
        ("drakorid", 1, ("drakorid-mirror",)),
        ("drakorindo", 2, ()),
    ),
}


def demo_gateway_config(upstream_base_url: str) -> GatewayConfig:
    """Build the demo routing: categories ``anime`` and ``drakor``, all eight endpoints each.

    Args:
        upstream_base_url: where the demo upstreams listen, e.g. ``http://127.0.0.1:8090``;
            each source lives at ``<upstream_base_url>/<source>/v1``.

    Returns:
        A validated config whose primaries and fallbacks all point at the demo upstreams.
    """
    base = upstream_base_url.rstrip("/")
    categories = []
    for category, chains in DEMO_CHAINS.items():
        primaries = [
            PrimaryApi(source_name=name, base_url=f"{base}/{name}/v1", priority=priority)
            for name, priority, _ in chains
        ]
        fallbacks = {
            name: [f"{base}/{mirror}/v1" for mirror in mirrors]
            for name, _, mirrors in chains
            if mirrors
        }
        endpoints = [
            EndpointConfig(
                path=spec.path,
                primary_apis=primaries,
                fallback_apis=fallbacks,
                timeout_seconds=DEMO_TIMEOUT_SECONDS,
                ttl_seconds=DEMO_TTL_SECONDS,
            )
            for spec in ENDPOINTS
        ]
        categories.append(CategoryConfig(name=category, endpoints=endpoints))
    return GatewayConfig(categories=categories)
