"""Answering one category: cache first, then one shared fill per key, stale copy as last resort.

Order of decisions for a key (pure rules in ``gateway.cache.policy``):

1. fresh entry → ``HIT`` (and, in the last part of its TTL, a background refresh-ahead fill);
2. otherwise one fill per key per instance (single-flight) — with Redis, also one per
   deployment through a short fill lock; waiters on other instances pick up the filled entry;
3. the fill fails everywhere → the stale entry (``STALE``) if its stale window is open,
   else ``AllSourcesFailed`` (503) listing every attempt.

A cache store that errors (Redis down) is treated as a miss: serving beats caching.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from redis.exceptions import RedisError

from gateway.cache import CacheStore
from gateway.cache.policy import (
    CacheEntry,
    Freshness,
    cache_key,
    freshness,
    new_entry,
    should_refresh_ahead,
    store_expiry_seconds,
)
from gateway.errors import AllSourcesFailed
from gateway.routing import EndpointRoute
from gateway.selection import RequestContext, SelectionEngine, summarize_attempts
from gateway.singleflight import SingleFlight
from schemas.events import CacheStatus

log = logging.getLogger("apicat.service")
_STORE_ERRORS = (RedisError, OSError, TimeoutError)
_PEER_POLL_INTERVAL_S = 0.05


@dataclass(frozen=True, slots=True)
class Answer:
    entry: CacheEntry
    cache_status: CacheStatus
    served_at: float

    @property
    def age_seconds(self) -> int:
        return self.entry.age_seconds(self.served_at)


@dataclass(frozen=True, slots=True)
class ServicePolicy:
    deadline_s: float
    refresh_ahead_fraction: float
    fill_lock_s: float
    expose_upstream_urls: bool


class CategoryService:
    """Owns the read path for one process; share one instance across requests in one loop."""

    def __init__(
        self,
        cache: CacheStore,
        engine: SelectionEngine,
        policy: ServicePolicy,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._cache = cache
        self._engine = engine
        self._policy = policy
        self._now = wall_clock
        self._flights: SingleFlight[CacheEntry] = SingleFlight()
        self.cache_errors = 0

    async def answer(
        self,
        route: EndpointRoute,
        rest: str,
        params: Sequence[tuple[str, str]],
        ctx: RequestContext,
    ) -> Answer:
        """The best valid answer for one category, from cache or upstreams.

        Raises:
            AllSourcesFailed: every chain failed and no stale copy is usable.
        """
        key = cache_key(route.category, rest, params)
        entry = await self._get(key)
        now = self._now()
        if entry is not None and freshness(entry, now) is Freshness.FRESH:
            if should_refresh_ahead(
                entry, now, self._policy.refresh_ahead_fraction
            ) and not self._flights.is_running(key):
                task, _ = self._flights.start(
                    key, partial(self._fill, route, rest, params, ctx, key)
                )
                task.add_done_callback(_log_background_failure)
            return Answer(entry, CacheStatus.HIT, now)
        try:
            filled, _ = await self._flights.run(
                key, partial(self._fill, route, rest, params, ctx, key)
            )
        except AllSourcesFailed:
            if entry is not None and freshness(entry, self._now()) is Freshness.STALE:
                return Answer(entry, CacheStatus.STALE, self._now())
            raise
        return Answer(filled, CacheStatus.MISS, self._now())

    async def _fill(
        self,
        route: EndpointRoute,
        rest: str,
        params: Sequence[tuple[str, str]],
        ctx: RequestContext,
        key: str,
    ) -> CacheEntry:
        started = self._now()
        locked = await self._try_lock(key)
        if not locked:
            peer_entry = await self._wait_for_peer_fill(key, started)
            if peer_entry is not None:
                return peer_entry
        try:
            result = await self._engine.select(route, rest, params, ctx, self._policy.deadline_s)
            if result.winner is None:
                tried = summarize_attempts(result.attempts)
                raise AllSourcesFailed(
                    f"no source of category {route.category!r} returned a valid answer"
                    + (f" ({tried})" if tried else ""),
                    [
                        a.public(expose_url=self._policy.expose_upstream_urls)
                        for a in result.attempts
                    ],
                )
            now = self._now()
            entry = new_entry(
                result.winner.body,
                result.winner.link.source_name,
                result.winner.link.depth,
                now=now,
                ttl_seconds=route.config.effective_ttl_seconds,
                stale_ttl_seconds=route.config.stale_ttl_seconds,
            )
            await self._set(key, entry, store_expiry_seconds(entry, now))
            return entry
        finally:
            if locked:
                await self._unlock(key)

    async def _wait_for_peer_fill(self, key: str, started: float) -> CacheEntry | None:
        """Another instance holds the fill lock: wait (bounded) for the entry it stores."""
        give_up_at = time.monotonic() + self._policy.fill_lock_s
        while time.monotonic() < give_up_at:
            await asyncio.sleep(_PEER_POLL_INTERVAL_S)
            entry = await self._get(key)
            if entry is not None and entry.stored_at >= started:
                return entry
        return None

    async def _get(self, key: str) -> CacheEntry | None:
        try:
            return await self._cache.get(key)
        except _STORE_ERRORS as exc:
            self._store_failed("get", exc)
            return None

    async def _set(self, key: str, entry: CacheEntry, expire_s: float) -> None:
        try:
            await self._cache.set(key, entry, expire_s)
        except _STORE_ERRORS as exc:
            self._store_failed("set", exc)

    async def _try_lock(self, key: str) -> bool:
        try:
            return await self._cache.try_lock(key, self._policy.fill_lock_s)
        except _STORE_ERRORS as exc:
            self._store_failed("lock", exc)
            return True

    async def _unlock(self, key: str) -> None:
        try:
            await self._cache.unlock(key)
        except _STORE_ERRORS as exc:
            self._store_failed("unlock", exc)

    def _store_failed(self, operation: str, exc: BaseException) -> None:
        self.cache_errors += 1
        log.warning(
            "cache %s failed; serving without cache",
            operation,
            extra={"error": f"{type(exc).__name__}: {exc}"},
        )

    async def drain(self) -> None:
        """Wait for background refreshes in flight (graceful shutdown, tests)."""
        await self._flights.wait_idle()

    async def aclose(self) -> None:
        await self._flights.aclose()


def _log_background_failure(task: asyncio.Task[CacheEntry]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, AllSourcesFailed):
        log.error("background refresh failed", exc_info=exc)
