"""The process container: builds every runtime part from settings and owns their lifecycle.

All mutable runtime state lives here (no module-level singletons), so tests build as many
independent gateways as they like from their own settings.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.breaker import BreakerRegistry, CircuitTransition
from gateway.cache import CacheStore
from gateway.cache.memory import MemoryCache
from gateway.cache.redis_store import RedisCache
from gateway.emitter import BufferedEmitter
from gateway.events import EventEmitter, MemoryEmitter
from gateway.health_view import HealthView
from gateway.ratelimit import IPNetwork, RateLimiter, parse_trusted_proxies
from gateway.routing import RoutingTable, build_routing_table
from gateway.selection import RetryPolicy, SelectionEngine
from gateway.service import CategoryService, ServicePolicy
from gateway.settings import Settings
from gateway.upstream import AiohttpUpstreamClient, UpstreamFetcher
from health.status import MemoryStatusStore, RedisStatusStore, StatusStore
from schemas.config import GatewayConfig
from schemas.events import CircuitChangeEvent

USER_AGENT = "apicategorywithfallback/0.1"


class Container:
    """Everything one gateway process needs; create inside the serving event loop's lifetime."""

    def __init__(
        self,
        settings: Settings,
        config: GatewayConfig,
        *,
        emitter: EventEmitter | None = None,
        fetcher: UpstreamFetcher | None = None,
        cache: CacheStore | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.started_at = time.time()
        self.emitter: EventEmitter = emitter if emitter is not None else MemoryEmitter()
        self.config = config
        self.routing: RoutingTable = build_routing_table(config)
        self.cache: CacheStore = cache if cache is not None else _build_cache(settings)
        self.limiter = RateLimiter(settings.rate_limit, settings.redis_url)
        self.trusted_proxies: tuple[IPNetwork, ...] = parse_trusted_proxies(
            settings.trusted_proxies
        )
        self.breakers = BreakerRegistry(
            settings.breaker_failure_threshold,
            settings.breaker_open_seconds,
            self._emit_circuit_change,
        )
        self.fetcher: UpstreamFetcher = fetcher or AiohttpUpstreamClient(
            max_body_bytes=settings.max_upstream_body_bytes,
            max_connections=settings.max_upstream_connections,
            user_agent=USER_AGENT,
        )
        self.health = HealthView(on_recovered=self.breakers.record_success)
        self.probe_status: StatusStore = (
            RedisStatusStore(settings.redis_url) if settings.redis_url else MemoryStatusStore()
        )
        self.engine = SelectionEngine(
            self.fetcher,
            self.breakers,
            self.emitter,
            RetryPolicy(
                attempts=settings.retry_attempts,
                initial_wait_s=settings.retry_initial_wait_seconds,
                max_wait_s=settings.retry_max_wait_seconds,
            ),
            health=self.health,
        )
        self.service = CategoryService(
            self.cache,
            self.engine,
            ServicePolicy(
                deadline_s=settings.request_deadline_seconds,
                refresh_ahead_fraction=settings.refresh_ahead_fraction,
                fill_lock_s=settings.singleflight_lock_seconds,
                expose_upstream_urls=settings.expose_upstream_urls,
            ),
            wall_clock=wall_clock,
        )

    def apply_config(self, config: GatewayConfig) -> None:
        """Swap in a new config; requests already running keep the table they started with."""
        self.routing = build_routing_table(config)
        self.config = config

    def _emit_circuit_change(self, change: CircuitTransition) -> None:
        self.emitter.emit(
            CircuitChangeEvent(
                instance=self.settings.instance,
                upstream_url=change.upstream_url,
                from_state=change.from_state.value,
                to_state=change.to_state.value,
                consecutive_failures=change.consecutive_failures,
            )
        )

    async def start(self) -> None:
        """Start background parts (the event flusher); call inside the serving loop."""
        if isinstance(self.emitter, BufferedEmitter):
            self.emitter.start()

    async def aclose(self) -> None:
        await self.service.aclose()
        await self.fetcher.aclose()
        await self.limiter.aclose()
        await self.cache.aclose()
        await self.probe_status.aclose()
        # Last, so the events of everything above are flushed (or journaled) too.
        if isinstance(self.emitter, BufferedEmitter):
            await self.emitter.aclose()


def _build_cache(settings: Settings) -> CacheStore:
    if settings.redis_url:
        return RedisCache(settings.redis_url)
    return MemoryCache(settings.cache_max_bytes)
