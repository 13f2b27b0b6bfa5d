"""Operational endpoints: ``/livez``, ``/readyz`` and ``/health`` (seed 002's three states)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import UTC, datetime

from quart import Quart, Response
from quart_schema import document_response, tag

from gateway.breaker import CircuitState
from gateway.container import Container
from gateway.emitter import BufferedEmitter
from gateway.events import MemoryEmitter
from gateway.responses import json_response
from health.status import StatusStoreError
from schemas.api import HealthBody

_PING_TIMEOUT_S = 1.0
_STATUS_CODE = {"healthy": 200, "degraded": 200, "unhealthy": 503}


async def health_checks(container: Container) -> tuple[str, dict[str, dict[str, object]]]:
    """Check each dependency; the overall status is the worst of them.

    ``unhealthy``: the gateway cannot serve (no active category).
    ``degraded``: it serves with less protection: the cache store is unreachable (every
    request goes upstream) or some upstream circuit is open.
    """
    checks: dict[str, dict[str, object]] = {}
    categories = container.routing.category_names
    checks["config"] = {
        "status": "healthy" if categories else "unhealthy",
        "active_categories": len(categories),
    }
    try:
        async with asyncio.timeout(_PING_TIMEOUT_S):
            await container.cache.ping()
        checks["cache"] = {"status": "healthy", "backend": container.cache.backend}
    except Exception as exc:  # any failure to ping means the same thing: cache unusable
        checks["cache"] = {
            "status": "degraded",
            "backend": container.cache.backend,
            "error": f"{type(exc).__name__}: {exc}"[:200],
        }
    checks["cache"]["errors_total"] = container.service.cache_errors
    states = container.breakers.states()
    not_closed = sorted(url for url, state in states.items() if state is not CircuitState.CLOSED)
    probed_down = container.health.down
    checks["upstreams"] = {
        "status": "degraded" if not_closed or probed_down else "healthy",
        "tracked": len(states),
        "circuits_not_closed": len(not_closed),
        "probed_down": len(probed_down),
    }
    checks["rate_limit"] = {
        "status": "healthy",
        "errors_total": container.limiter.errors,
        "backend": container.limiter.backend,
        "limit": container.limiter.limit,
    }
    checks["events"] = event_pipeline_check(container)
    statuses = {check["status"] for check in checks.values()}
    overall = next(
        (s for s in ("unhealthy", "degraded") if s in statuses),
        "healthy",
    )
    return overall, checks


def event_pipeline_check(container: Container) -> dict[str, object]:
    """Degraded while the transport is down or the journal holds a backlog; dropped must be 0."""
    emitter = container.emitter
    if isinstance(emitter, BufferedEmitter):
        stats = emitter.stats()
        healthy = stats.transport_up and stats.journal_pending == 0 and stats.dropped_total == 0
        return {"status": "healthy" if healthy else "degraded", **asdict(stats)}
    if isinstance(emitter, MemoryEmitter):
        return {"status": "healthy", "transport": "memory", "emitted_total": emitter.emitted_total}
    return {"status": "healthy", "transport": type(emitter).__name__}


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds")


def register_ops(app: Quart, container: Container) -> None:
    @app.get("/livez")
    @tag(["operations"])
    async def livez() -> Response:
        """The process is up and its event loop answers."""
        return json_response({"status": "healthy"})

    @app.get("/health/upstreams")
    @tag(["operations"])
    async def health_upstreams() -> Response:
        """Latest probe result per upstream URL: status, up, latency, last check, last change."""
        try:
            statuses = await container.probe_status.get_all()
        except StatusStoreError as exc:
            return json_response(
                {"code": "status_store_unavailable", "message": str(exc)[:300]}, 503
            )
        circuits = container.breakers.states()
        body = [
            {
                "url": s.url,
                "category": s.category,
                "source": s.source_name,
                "status": s.status.value,
                "up": s.up,
                "routed_as_down": container.health.is_down(s.url),
                "circuit": circuits.get(s.url, CircuitState.CLOSED).value,
                "latency_ms": round(s.latency_ms, 1),
                "consecutive_failures": s.consecutive_failures,
                "checked_at": _iso(s.checked_at),
                "changed_at": _iso(s.changed_at),
                "detail": s.detail,
            }
            for s in sorted(statuses.values(), key=lambda s: (s.category, s.url))
        ]
        return json_response({"upstreams": body})

    # One view for both: a load balancer's readiness is exactly "not unhealthy".
    @app.get("/readyz")
    @app.get("/health")
    @tag(["operations"])
    @document_response(HealthBody, 200)
    @document_response(HealthBody, 503)
    async def health() -> Response:
        """healthy / degraded → 200, unhealthy → 503, with a breakdown per dependency."""
        overall, checks = await health_checks(container)
        return json_response({"status": overall, "checks": checks}, _STATUS_CODE[overall])
