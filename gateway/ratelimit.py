"""Per-client-IP rate limiting (the ``limits`` library) and trusted-proxy client resolution."""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
log = logging.getLogger("apicat.ratelimit")
_STORE_ERRORS = (RedisError, StorageError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_after_s: int

    def headers(self) -> dict[str, str]:
        """IETF ``RateLimit-*`` fields (draft-ietf-httpapi-ratelimit-headers)."""
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_after_s),
        }


class RateLimiter:
    """Fixed-window counter per client IP; in-process, or in Redis so all instances share it.

    Fixed windows cost one counter increment per request, which keeps the cache-hit path cheap;
    the price is that a client may burst up to twice the limit across a window boundary.
    """

    def __init__(self, limit: str, redis_url: str | None) -> None:
        self._item: RateLimitItem = parse(limit)
        # We own the connection pool so that closing the limiter closes its sockets.
        self._pool: ConnectionPool | None = None
        if redis_url:
            self._pool = ConnectionPool.from_url(
                redis_url, socket_timeout=2.0, socket_connect_timeout=2.0
            )
            self._storage: Storage = RedisStorage(
                "async+" + redis_url.removeprefix("async+"),
                implementation="redispy",
                key_prefix="apicat:ratelimit",
                # limits types its pass-through options narrowly; redis-py accepts a pool.
                connection_pool=self._pool,  # type: ignore[arg-type]
            )
        else:
            self._storage = MemoryStorage()
        self._limiter = FixedWindowRateLimiter(self._storage)
        self.backend = "redis" if redis_url else "memory"
        self.errors = 0

    @property
    def limit(self) -> str:
        return str(self._item)

    async def hit(self, client_id: str) -> RateDecision:
        """Count one request of ``client_id``.

        Fails open: when the counter store is unreachable the request is allowed (and
        ``errors`` counts it), because refusing all traffic is worse than not limiting it.
        """
        try:
            allowed = await self._limiter.hit(self._item, client_id)
            stats = await self._limiter.get_window_stats(self._item, client_id)
        except _STORE_ERRORS as exc:
            self.errors += 1
            log.warning("rate-limit store failed; allowing", extra={"error": repr(exc)[:200]})
            return RateDecision(True, self._item.amount, self._item.amount, 1)
        reset_after = max(1, math.ceil(stats.reset_time - time.time()))
        return RateDecision(allowed, self._item.amount, max(0, stats.remaining), reset_after)

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        if isinstance(self._storage, MemoryStorage):
            # MemoryStorage runs an expiry timer task; stop it with the app.
            timer = getattr(self._storage, "timer", None)
            if timer is not None and hasattr(timer, "cancel"):
                timer.cancel()


def parse_trusted_proxies(cidrs: Sequence[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def client_ip(peer: str, forwarded_for: str | None, trusted: Sequence[IPNetwork]) -> str:
    """The address to rate-limit: the peer, or the first untrusted hop of ``X-Forwarded-For``.

    Walks the header right to left only while each hop is a trusted proxy, so a client cannot
    spoof its address by prepending entries.

    Args:
        peer: the socket peer address.
        forwarded_for: the ``X-Forwarded-For`` header, if any.
        trusted: networks of proxies whose header is believed.
    """
    if not trusted or not forwarded_for or not _is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _is_trusted(address: str, trusted: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)
